"""Configuration: the option table, its loader and its generated reference."""

from prefork.config.errors import ConfigError
from prefork.config.loader import load_settings
from prefork.config.settings import Settings

__all__ = ["ConfigError", "Settings", "load_settings"]
