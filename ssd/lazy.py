"""Names whose module is imported on first use, so that ``ssd --help``, ``--cfg`` and tab completion
never import torch (issue 20: every command paid ~4 s of torch before Hydra answered).

``ssd.run`` binds its heavy names with ``lazy(module, attr)``: the module is imported the first time
the name is called or one of its attributes is read, i.e. once a job really runs.
"""

from __future__ import annotations

import importlib
from typing import Any


class Lazy:
    """``module`` (or ``module.attr``), imported on first call or attribute access."""

    __slots__ = ("_module", "_attr", "_target")

    def __init__(self, module: str, attr: str | None = None) -> None:
        self._module = module
        self._attr = attr
        self._target: Any = None

    def resolve(self) -> Any:
        """The module or attribute itself (imported now, if it is not yet)."""
        if self._target is None:
            target = importlib.import_module(self._module)
            self._target = target if self._attr is None else getattr(target, self._attr)
        return self._target

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        name = self._module if self._attr is None else f"{self._module}.{self._attr}"
        return f"<lazy {name}{'' if self._target is None else ' (imported)'}>"


def lazy(module: str, attr: str | None = None) -> Any:
    """``module`` or ``module.attr``, imported when first used (typed ``Any``: it stands for either)."""
    return Lazy(module, attr)
