"""Collect intermediate feature maps ("taps") during an ordinary forward pass.

``FeatureTaps`` puts forward hooks on the modules behind the chosen tap names, so the
logits and the features come out of one forward call (no second pass, no re-implemented
forward per architecture). The hooks sit on the *inner* modules, so they keep firing when
the model is later wrapped in ``DistributedDataParallel`` (which calls the wrapped module
as usual), run under ``torch.autocast`` (the features then have the autocast dtype, e.g.
bfloat16) or in ``channels_last`` memory format (features keep that format). Build the
taps on the unwrapped model; a DDP/DataParallel/``torch.compile`` wrapper passed in is
unwrapped first.

Recorded features keep their autograd graph (a student's feature loss backpropagates
through them); run a frozen teacher under ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def resolve_taps(spec: str | Sequence[str], tap_map: Mapping[str, str]) -> list[str]:
    """Turn ``"all"`` or a list of tap names into a checked list in network order.

    The result follows ``tap_map``'s order (stem first) whatever order ``spec`` lists, so
    loss terms and logs line up across configs.
    """
    valid = list(tap_map)
    names = valid if spec == "all" else [spec] if isinstance(spec, str) else list(spec)
    for name in names:
        if name not in tap_map:
            raise ValueError(f"tap {name!r} is not known; valid taps: {', '.join(valid)} (or 'all')")
    if len(set(names)) != len(names):
        raise ValueError(f"taps listed more than once: {names}")
    return [name for name in valid if name in names]


def _unwrap(model: nn.Module) -> nn.Module:
    """The module a DDP/DataParallel/torch.compile wrapper runs (hooks go on its children)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


class FeatureTaps:
    """Forward hooks that record the outputs of the tapped modules of ``model``.

    ``tap_map`` defaults to ``model.taps`` (see ``Classifier``). Each forward pass of
    ``model`` starts a fresh record; ``pop()`` returns it (ordered as ``names``) and clears
    it. ``enabled = False`` (or ``disable()``) stops recording, e.g. during evaluation.
    ``remove()`` (or leaving a ``with`` block) removes every hook.
    """

    def __init__(
        self,
        model: nn.Module,
        names: str | Sequence[str],
        tap_map: Mapping[str, str] | None = None,
    ) -> None:
        model = _unwrap(model)
        if tap_map is None:
            tap_map = getattr(model, "taps", None)
            if tap_map is None:
                raise ValueError("model has no .taps attribute; pass tap_map explicitly")
        self.names: list[str] = resolve_taps(names, tap_map)
        self.enabled = True
        self._features: dict[str, Tensor] = {}
        self._in_pass = False
        self._handles: list[RemovableHandle] = [
            model.register_forward_pre_hook(self._start_pass),
            model.register_forward_hook(self._end_pass),
        ]
        for name in self.names:
            module = model.get_submodule(tap_map[name])
            self._handles.append(module.register_forward_hook(self._recorder(name)))

    def _start_pass(self, _module: nn.Module, _args: Any) -> None:
        self._features = {}
        self._in_pass = True

    def _end_pass(self, _module: nn.Module, _args: Any, _output: Any) -> None:
        self._in_pass = False

    def _recorder(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if not self.enabled:
                return
            if not isinstance(output, Tensor):
                raise TypeError(f"tap {name!r}: module returned {type(output).__name__}, not a Tensor")
            if self._in_pass and name in self._features:
                raise RuntimeError(
                    f"tap {name!r} fired twice in one forward pass: its module is called more "
                    "than once, so the tap is ambiguous"
                )
            self._features[name] = output

        return hook

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def pop(self) -> dict[str, Tensor]:
        """Return the features of the last forward pass (ordered as ``names``) and clear them."""
        missing = [n for n in self.names if n not in self._features]
        if missing:
            raise RuntimeError(
                f"no features recorded for taps {missing}; run a forward pass with the taps "
                "enabled before pop()"
            )
        features = {n: self._features[n] for n in self.names}
        self._features = {}
        return features

    def remove(self) -> None:
        """Remove every hook and drop recorded features (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._features = {}

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@torch.no_grad()
def tap_shapes(
    model: nn.Module,
    names: str | Sequence[str],
    input_shape: Sequence[int],
    tap_map: Mapping[str, str] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes (batch dim dropped) of the taps for inputs of ``input_shape``.

    ``input_shape`` is ``(C, H, W)`` or ``(N, C, H, W)``. Runs one forward on zeros in eval
    mode (so BatchNorm statistics are untouched) and restores the train/eval state of
    every submodule. Use it to check that teacher and student taps match before training.
    """
    model = _unwrap(model)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with FeatureTaps(model, names, tap_map) as taps:
            model(torch.zeros(shape, device=device, dtype=dtype))
            features = taps.pop()
    finally:
        for m, training in modes.items():
            m.train(training)
    return {name: tuple(f.shape[1:]) for name, f in features.items()}
