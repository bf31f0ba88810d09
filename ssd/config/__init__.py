"""What a config may hold, checked before any data is read: the error type, signature checks, machine facts.

The bottom layer: nothing here imports another part of ssd. ``signatures`` reads what a section
may hold from the callable it builds (``Range`` marks numeric bounds in annotations);
``resources`` checks what values point at on this machine. A whole run is checked by
``ssd.validate``, which builds the parts.
"""

from ssd.config.errors import ConfigError
from ssd.config.signatures import Range

__all__ = ["ConfigError", "Range"]
