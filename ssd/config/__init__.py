"""What a config may hold, checked before any data is read: the error type, signature checks, machine facts.

The bottom layer: nothing here imports another part of ssd. ``signatures`` reads which keys a
section may hold from the callable it builds, ``annotations`` what each value may be (``Range``
marks numeric bounds), ``resources`` what values point at on this machine. A whole run is checked by
``ssd.validate``, which builds the parts.
"""

from ssd.config.annotations import Range
from ssd.config.errors import ConfigError

__all__ = ["ConfigError", "Range"]
