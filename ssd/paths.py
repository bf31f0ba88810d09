"""Where ssd's own files are: the config tree (a checkout's ``conf/``)."""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def conf_dir() -> Path:
    """The ``conf/`` folder next to the package (an editable install or a checkout)."""
    if not (CONF_DIR / "config.yaml").exists():
        raise FileNotFoundError(
            f"ssd's config tree was not found at {CONF_DIR}; install ssd editable from a checkout (make install)"
        )
    return CONF_DIR
