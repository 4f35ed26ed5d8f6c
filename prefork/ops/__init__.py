"""Operations: sizing, generated nginx and systemd configuration."""
