"""Config checks that run before any data is read or any model is built."""

from ssd.config.errors import ConfigError
from ssd.config.validate import validate

__all__ = ["ConfigError", "validate"]
