"""Config checks that run before any data is read or any model is built."""

from ssd.config.validate import ConfigError, validate

__all__ = ["ConfigError", "validate"]
