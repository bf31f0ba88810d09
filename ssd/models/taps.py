"""Collect intermediate feature maps ("taps") during an ordinary forward pass.

``FeatureTaps`` puts forward hooks on the modules behind the chosen tap names, so the
logits and the features come out of one forward call (no second pass, no re-implemented
forward per architecture). The hooks sit on the *inner* modules, so they keep firing when
the model is later wrapped in ``DistributedDataParallel`` (which calls the wrapped module
as usual), run under ``torch.autocast`` (the features then have the autocast dtype, e.g.
bfloat16) or in ``channels_last`` memory format (features keep that format). Build the
taps on the unwrapped model; a DDP/DataParallel/``torch.compile`` wrapper passed in is
unwrapped first.

A tap is a named tap of the network (``model.taps``: name -> module path, e.g. ssd's ResNets'
``stem``, ``layer1`` ...) or ANY dotted module path in it (``layer2.0.conv1``; for a
``Classifier`` relative to its backbone), as torchdistill's forward hooks address modules: a
backbone needs no change to be distilled. A recorded feature that a later in-place op changes
(a tap on a BatchNorm followed by ``ReLU(inplace=True)``) is an error naming the tap, never a
silently wrong feature.

Recorded features keep their autograd graph (a student's feature loss backpropagates
through them); run a frozen teacher under ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def resolve_taps(spec: str | Sequence[str], model: nn.Module) -> dict[str, str]:
    """``"all"``, a tap or a list of taps -> ``{tap: module path in model}``, in network order.

    A tap is a name in ``model.taps`` or a dotted module path: relative to ``model.tap_root`` when
    the model has one (a ``Classifier``: its backbone), else to ``model``. ``"all"`` is every named
    tap. The order follows the modules' order in the network whatever order ``spec`` lists, so loss
    terms and logs line up across configs.
    """
    model = _unwrap(model)
    named: Mapping[str, str] = getattr(model, "taps", None) or {}
    if spec == "all":
        if not named:
            raise ValueError(
                f"{type(model).__name__} names no feature taps, so 'all' means nothing; list module paths "
                f"instead, e.g. [{', '.join(_example_paths(model))}]"
            )
        entries = list(named)
    else:
        entries = [spec] if isinstance(spec, str) else list(spec)
    if len(set(entries)) != len(entries):
        raise ValueError(f"taps listed more than once: {entries}")
    modules = dict(model.named_modules())
    root = getattr(model, "tap_root", "")
    paths: dict[str, str] = {}
    for entry in entries:
        candidates = [named[entry]] if entry in named else [f"{root}.{entry}" if root else entry, entry]
        path = next((c for c in candidates if c in modules), None)
        if path is None:
            raise ValueError(
                f"tap {entry!r} is not known: not a named tap ({', '.join(named) or 'none'}, or 'all') and no "
                f"module at that path; module paths look like {', '.join(_example_paths(model))}"
            )
        paths[entry] = path
    order = {name: i for i, name in enumerate(modules)}
    return dict(sorted(paths.items(), key=lambda item: order[item[1]]))


def _example_paths(model: nn.Module, n: int = 3) -> list[str]:
    root = getattr(model, "tap_root", "")
    below = model.get_submodule(root) if root else model
    return [name for name, _ in below.named_children()][:n] or ["<none>"]


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

    ``spec`` is what ``resolve_taps`` takes (named taps and/or dotted module paths). Each forward
    pass of ``model`` starts a fresh record; ``pop()`` returns it (ordered as ``names``) and clears
    it. ``enabled = False`` (or ``disable()``) stops recording, e.g. during evaluation.
    ``remove()`` (or leaving a ``with`` block) removes every hook.
    """

    def __init__(self, model: nn.Module, spec: str | Sequence[str]) -> None:
        model = _unwrap(model)
        self.paths = resolve_taps(spec, model)
        self.names: list[str] = list(self.paths)
        self.enabled = True
        self._features: dict[str, Tensor] = {}
        self._versions: dict[str, int] = {}
        self._in_pass = False
        self._handles: list[RemovableHandle] = [
            model.register_forward_pre_hook(self._start_pass),
            model.register_forward_hook(self._end_pass),
        ]
        for name, path in self.paths.items():
            self._handles.append(model.get_submodule(path).register_forward_hook(self._recorder(name)))

    def _start_pass(self, _module: nn.Module, _args: Any) -> None:
        self._features = {}
        self._versions = {}
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
            self._versions[name] = output._version

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
        changed = [n for n in self.names if self._features[n]._version != self._versions[n]]
        if changed:
            raise RuntimeError(
                f"tap {changed[0]!r} ({self.paths[changed[0]]}): its output was changed in place later in the "
                "forward pass (e.g. by a ReLU(inplace=True) after it), so the recorded feature is not the "
                "module's output; tap the module after the in-place op instead"
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
    model: nn.Module, spec: str | Sequence[str], input_shape: Sequence[int]
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
        with FeatureTaps(model, spec) as taps:
            model(torch.zeros(shape, device=device, dtype=dtype))
            features = taps.pop()
    finally:
        for m, training in modes.items():
            m.train(training)
    return {name: tuple(f.shape[1:]) for name, f in features.items()}
