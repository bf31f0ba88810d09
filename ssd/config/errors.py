"""The one error type of config checks (its own module so that any layer can raise it)."""


class ConfigError(ValueError):
    """A config value that is not allowed; the message names key, value and what is allowed."""
