"""Moved: CIFAR finding/decoding is in ``ssd/data/cifar.py``, image-folder scans in ``ssd/data/folder.py``.

Kept only so that ``ssd/config/validate.py`` and ``ssd/plainloop.py`` import until they name the new
modules; import from ``ssd.data.cifar`` / ``ssd.data.roots`` / ``ssd.data.folder`` instead.
"""

from ssd.data.cifar import VARIANTS, load_cifar_arrays
from ssd.data.folder import scan_image_folder
from ssd.data.roots import resolve_data_root

__all__ = ["VARIANTS", "load_cifar_arrays", "resolve_data_root", "scan_image_folder"]
