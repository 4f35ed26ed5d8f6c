"""Worker processes: what runs in a child after the master forks it."""
