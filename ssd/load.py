"""A trained network of a finished run, outside ssd: ``ssd.load(run_dir, stage="main")``.

::

    import ssd, torch
    net = ssd.load("outputs/runs/<run>")          # nn.Module in eval mode, on the CPU
    logits = net(images)                          # images: float [0, 1], NCHW, the run's image size

The network holds its own preprocessing: it takes images in [0, 1] and normalises them with the
training data's channel mean and std inside (``ssd.models.classifier.Classifier``); a ``denoise`` or
``joint`` run's network denoises, then classifies. No noise is added: evaluate it on whatever images
you have. A ``denoiser`` stage gives images back, not logits.

``stage`` is ``main`` (the run's own network) or a required stage by role, nested with ``/``
(``teacher``, ``teacher/teacher`` for a born-again chain). ``ssd.load.info(run_dir, stage)`` says what
the network takes and gives (``ModelInfo``).

This module is callable (``ssd.load(...)`` is ``ssd.load.load(...)``), so ``import ssd`` stays light:
``ssd/__init__.py`` imports it, and torch, only when ``ssd.load`` is first used.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssd.data.protocol import DataFacts
from ssd.parts import build_datamodule, build_strategy, strategy_class
from ssd.results import read_json
from ssd.stages import NET_FILE, load_stage_weights, stage_config
from ssd.strategies.base import NoisyImageModule

MAIN = "main"


class RunError(ValueError):
    """A run folder or stage that cannot give a network (the message names the value and what is allowed)."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded network takes and gives."""

    run_dir: Path
    stage: str
    strategy: str
    #: the weights file loaded
    weights: Path
    #: input: float images in [0, 1], ``(N, channels, image_size, image_size)``
    channels: int
    image_size: int
    #: output: ``num_classes`` logits per image (a denoiser stage: images like its input)
    num_classes: int
    outputs: str
    #: class names by index, where the data has them
    classes: tuple[str, ...] | None


def _results(run_dir: Path) -> dict[str, Any]:
    results = read_json(run_dir / "results.json")
    if results is None:
        raise RunError(
            f"run_dir={str(run_dir)!r} has no results.json; allowed: the folder of a finished ssd run"
        )
    if results.get("status") != "complete":
        raise RunError(
            f"run_dir={str(run_dir)!r} has status={results.get('status')!r}; allowed: a complete run "
            "(run the same command into this folder to finish it)"
        )
    return results


def stage_names(records: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every stage of ``results.json``'s ``stages``, as ``load`` names them (``main``, ``teacher``, ...)."""
    names = []
    for role, record in records.items():
        name = f"{prefix}{role}"
        names.append(name)
        names += stage_names(record.get("requires") or {}, f"{name}/")
    return names


def _stage(results: Mapping[str, Any], stage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, record) of ``stage``: the run's for ``main``, else built down the roles as the pipeline does."""
    allowed = stage_names(results["stages"])
    if stage not in allowed:
        raise RunError(f"stage={stage!r} is not a stage of this run; allowed: {', '.join(allowed)}")
    cfg, records = dict(results["config"]), results["stages"]
    if stage == MAIN:
        return cfg, records[MAIN]
    record: dict[str, Any] = {}
    for role in stage.split("/"):
        section = cfg["strategy"]
        cfg = stage_config(cfg, strategy_class(section).role_config(section, role))
        record, records = records[role], records[role].get("requires") or {}
    return cfg, record


def _weights(run_dir: Path, stage: str, record: Mapping[str, Any]) -> Path:
    """The stage's weights: in the run folder (it may have moved), else where the run found them (the cache)."""
    here = run_dir.joinpath(*stage.split("/")) / NET_FILE
    recorded = Path(record["net"]) if record.get("net") else None
    for path in (here, recorded):
        if path is not None and path.is_file():
            return path
    raise RunError(
        f"stage={stage!r}: no weights at {here} nor at {recorded}; allowed: a stage whose net.pt exists"
    )


def build_stage(cfg: Mapping[str, Any], facts: DataFacts) -> NoisyImageModule:
    """A stage's strategy module with fresh networks (the stages it requires built the same way, untrained)."""
    section = cfg["strategy"]
    cls = strategy_class(section)
    frozen = {
        role: build_stage(stage_config(cfg, cls.role_config(section, role)), facts).net
        for role in cls.requires
    }
    return build_strategy(cfg, facts, frozen, seed=0)


def load_module(run_dir: str | Path, stage: str = MAIN) -> tuple[NoisyImageModule, ModelInfo]:
    """The stage's whole strategy module, its weights loaded, and what its network takes and gives."""
    run_dir = Path(run_dir)
    results = _results(run_dir)
    cfg, record = _stage(results, stage)
    # the data's declared facts (nothing is read); the channel mean and std come with the weights
    facts = DataFacts.declared(build_datamodule(cfg))
    with torch.random.fork_rng(devices=[]):  # building fresh networks must not move the caller's RNG
        module = build_stage(cfg, facts)
    weights = _weights(run_dir, stage, record)
    load_stage_weights(module, weights)
    mean = getattr(module.net, "mean", None)
    names = _class_names(run_dir) if stage == MAIN else None
    info = ModelInfo(
        run_dir=run_dir,
        stage=stage,
        strategy=str(cfg["strategy"]["name"]),
        weights=weights,
        channels=int(mean.shape[1]) if isinstance(mean, torch.Tensor) else 3,
        image_size=facts.image_size,
        num_classes=facts.num_classes,
        outputs="images"
        if strategy_class(cfg["strategy"]).predict_logits is not NoisyImageModule.predict_logits
        else "logits",
        classes=names,
    )
    return module, info


def _class_names(run_dir: Path) -> tuple[str, ...] | None:
    """Class names as the run saved them with its test predictions (``ssd.report.predictions``)."""
    from ssd.report.predictions import load_predictions

    found = load_predictions(run_dir)
    return None if found is None else found.classes


def info(run_dir: str | Path, stage: str = MAIN) -> ModelInfo:
    """What ``load(run_dir, stage)`` gives: its input shape and range, outputs, classes, weights file."""
    return load_module(run_dir, stage)[1]


def load(run_dir: str | Path, stage: str = MAIN, device: str | torch.device = "cpu") -> nn.Module:
    """The trained network of ``stage`` of the finished run in ``run_dir``, in eval mode on ``device``:
    float images in [0, 1] (NCHW) in, logits out, normalisation inside (see the module docstring)."""
    module, _ = load_module(run_dir, stage)
    return module.net.to(device).eval()


class _CallableModule(types.ModuleType):
    """``ssd.load(...)``: the module called is its ``load`` function."""

    def __call__(
        self, run_dir: str | Path, stage: str = MAIN, device: str | torch.device = "cpu"
    ) -> nn.Module:
        return load(run_dir, stage, device)


sys.modules[__name__].__class__ = _CallableModule
