"""Where ssd's own files are: the config tree.

In a checkout (and an editable install) it is the top-level ``conf/``; a wheel carries a copy
as ``ssd/conf`` (``setup.py`` puts it there at build time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict

PACKAGE_DIR = Path(__file__).resolve().parent
#: where to look, in order: a wheel's copy inside the package, then the checkout's conf/
CONF_CANDIDATES = (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf")


def conf_dir() -> Path:
    """The config tree (the folder holding ``config.yaml``) of this installation of ssd."""
    for candidate in CONF_CANDIDATES:
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"ssd's config tree was not found (looked for config.yaml in {', '.join(map(str, CONF_CANDIDATES))}); "
        "install ssd from a checkout (make install) or from a wheel built by `pip wheel .`"
    )


class PathsSection(TypedDict):
    """``paths``: where things are read and written (conf/paths/default.yaml)."""

    data_dir: str
    log_dir: str
    cache_dir: str
    #: file: fcntl locks on the stage cache | soft: marker files, for NFS/Lustre without working locks
    cache_lock: Literal["file", "soft"]
