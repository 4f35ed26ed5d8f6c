"""The built-in demo application served when no `app` is configured."""
