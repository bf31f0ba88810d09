"""Config checks that run before any data is read or any model is built.

Layers: ``errors`` (ConfigError) and ``checks`` (``require*`` helpers) are the bottom, usable by
any module; ``keys`` and ``resources`` check unknown keys and the machine; ``validate`` checks a
whole run config, stages included (it imports ``ssd.stages``, so it is not imported here:
``from ssd.config.validate import validate``).
"""

from ssd.config.errors import ConfigError

__all__ = ["ConfigError"]
