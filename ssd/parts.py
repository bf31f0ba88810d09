"""Where a config becomes an object: every part a researcher swaps is built here, from a ``_target_``.

Each part's config section is a ``_target_`` (any importable class or function: ssd's, a
library's, or one in your own folder) and its keyword arguments, built with
``hydra.utils.instantiate``. ssd adds the arguments only it can know (``filled``) and reads a
few keys of some sections itself (``reads``); everything else goes to the callable, so its
signature is the schema (``ssd.validate`` checks a section against it before anything runs):

* ``data``: a datamodule; nothing filled in.
* ``noise``: a ``NoiseModel``; nothing filled in; ssd reads ``eval_levels`` (the robustness curve).
* ``model``: a backbone ``nn.Module``; ``num_classes`` filled in, then wrapped (``Classifier``: normalising).
* ``denoiser``: a denoiser ``nn.Module``; nothing filled in.
* ``optim``: ``optimizer`` gets ``params``; ``scheduler`` gets the optimizer, and ``total_steps`` and
  ``steps_per_epoch`` where its signature takes them.
* ``strategy``: a ``NoisyImageModule``; ``classifier``, ``noise``, ``optimizer``, ``scheduler``,
  ``data``, ``evaluation``, ``seed``, ``frozen`` filled in (and ``denoiser``, ``frozen_seeds`` where
  ``__init__`` takes them); ssd reads ``name``, ``optim``, a section per role and the class's ``section_keys``.
* ``logger.<name>``: a Lightning logger; ``stage`` (``ssd.stage_info.StageInfo``) filled in.
* ``callbacks.<name>``: a Lightning callback; ``stage`` filled in where the callable takes it.

A YAML key that is a Python keyword arrives with a trailing underscore (``strategy.lambda`` ->
``lambda_``): ``ssd.config.signatures.as_kwargs`` is that mapping, the only one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import lightning as L
import torch
from hydra.utils import get_class, get_object, instantiate
from lightning.pytorch.loggers import Logger
from torch import nn

from ssd.config import Range
from ssd.config.signatures import HYDRA_KEYS, as_kwargs, schema_of
from ssd.data.protocol import DataFacts, NoisyDataModule
from ssd.models import Classifier
from ssd.noise import NoiseModel
from ssd.stage_info import StageInfo
from ssd.strategies.base import Evaluation, NoisyImageModule, OptimizerFactory, SchedulerFactory


@dataclass(frozen=True)
class Kind:
    """What ssd fills in when it builds a part of one kind, which keys of its section it reads itself,
    and tighter types for arguments whose own annotations say too little."""

    filled: frozenset[str] = frozenset()
    reads: Mapping[str, Any] = field(default_factory=dict)
    narrow: Mapping[str, Any] = field(default_factory=dict)


DATA = Kind()
NOISE = Kind(reads={"eval_levels": list[float]})
MODEL = Kind(filled=frozenset({"num_classes"}))
DENOISER = Kind()
#: torch.optim types ``lr`` as ``float | Tensor`` and bounds nothing
OPTIMIZER = Kind(
    filled=frozenset({"params"}),
    narrow={
        "lr": Annotated[float, Range(gt=0)],
        "weight_decay": Annotated[float, Range(ge=0)],
        "momentum": Annotated[float, Range(ge=0, le=1)],
        "dampening": Annotated[float, Range(ge=0, le=1)],
        "eps": Annotated[float, Range(gt=0)],
        "betas": tuple[Annotated[float, Range(ge=0, lt=1)], Annotated[float, Range(ge=0, lt=1)]],
    },
)
SCHEDULER = Kind(filled=frozenset({"optimizer", "total_steps", "steps_per_epoch"}))
LOGGER = Kind(filled=frozenset({"stage"}))
#: Lightning types these as plain ``str`` / ``int`` (a typo would be a new mode)
CALLBACK = Kind(
    filled=frozenset({"stage"}),
    narrow={"mode": Literal["min", "max"], "patience": Annotated[int, Range(ge=0)]},
)
#: what every strategy gets from ssd (``NoisyImageModule.__init__``), plus ``denoiser`` where it takes one
STRATEGY_FILLED = frozenset(
    {
        "classifier",
        "denoiser",
        "noise",
        "optimizer",
        "scheduler",
        "data",
        "evaluation",
        "seed",
        "frozen",
        "frozen_seeds",
    }
)


def _partial(section: Mapping[str, Any]) -> Any:
    """``instantiate`` a section half-way: its callable with the section's keys bound (lists and mappings
    as plain Python containers), waiting for what ssd fills in."""
    return instantiate(dict(section), _partial_=True, _convert_="all")


def _build(section: Mapping[str, Any], **filled: Any) -> Any:
    """Build a section's part with ``filled`` added (objects are passed to the callable, never through
    Hydra's config machinery)."""
    return _partial(section)(**filled)


def takes(target: Callable[..., Any], name: str) -> bool:
    """Whether ``target`` has a parameter ``name`` (following ``**kwargs`` passed on to base classes)."""
    return name in schema_of(target).params


# --------------------------------------------------------------------------- data, noise, networks


def build_datamodule(cfg: Mapping[str, Any]) -> NoisyDataModule:
    """``data``: the datamodule, constructed only (it reads its data in ``prepare_data``/``setup``)."""
    return _build(cfg["data"])


def build_noise(section: Mapping[str, Any]) -> NoiseModel:
    """``noise``: the noise model (``eval_levels`` is ssd's: the robustness curve)."""
    return _build({k: v for k, v in section.items() if k not in NOISE.reads})


def build_classifier(model: Mapping[str, Any], facts: DataFacts) -> Classifier:
    """``model``: a fresh ``Classifier``, the backbone for ``facts.num_classes`` normalising with the data's
    mean and std."""
    return Classifier(_build(model, num_classes=facts.num_classes), facts.mean, facts.std)


def classifier_factory(model: Mapping[str, Any], facts: DataFacts) -> Callable[[], nn.Module]:
    """``build_classifier`` waiting to be called (picklable: ``ddp_spawn`` sends modules to its processes)."""
    return functools.partial(build_classifier, dict(model), facts)


def denoiser_factory(section: Mapping[str, Any]) -> Callable[[], nn.Module]:
    """``denoiser``: a function building a fresh denoiser network."""
    return functools.partial(_build, section)


# --------------------------------------------------------------------------- optimisation


def optimizer_factory(optim: Mapping[str, Any]) -> OptimizerFactory:
    """``optim.optimizer`` (``_partial_: true``), to be finished with the parameters to train."""
    return _partial(optim["optimizer"])


def build_scheduler(
    section: Mapping[str, Any], optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int
) -> Any:
    """``optim.scheduler`` for ``optimizer``, with the step counts where the schedule's signature takes them."""
    counts = {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch}
    target = get_object(section["_target_"])
    return _partial(section)(optimizer, **{k: v for k, v in counts.items() if takes(target, k)})


def scheduler_factory(optim: Mapping[str, Any]) -> SchedulerFactory:
    """``build_scheduler`` of ``optim.scheduler`` waiting for the optimizer and the step counts (picklable)."""
    return functools.partial(build_scheduler, dict(optim["scheduler"]))


# --------------------------------------------------------------------------- strategies


def strategy_class(section: Mapping[str, Any]) -> type[NoisyImageModule]:
    """The class ``strategy._target_`` names."""
    return get_class(section["_target_"])


def strategy_knobs(section: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a strategy section that go to its ``__init__`` (not the ones ssd reads itself)."""
    reads = strategy_class(section).section_annotations()
    return {k: v for k, v in section.items() if k not in reads and k not in HYDRA_KEYS}


def build_strategy(
    cfg: Mapping[str, Any],
    facts: DataFacts,
    frozen: Mapping[str, nn.Module],
    seed: int,
    frozen_seeds: Mapping[str, int | None] | None = None,
) -> NoisyImageModule:
    """The stage's strategy module from its whole config: its knobs plus everything ssd fills in.

    ``frozen_seeds``: the seed each frozen stage trained from (None: a given checkpoint), for a strategy
    whose ``__init__`` takes them (a student starting from its teacher's initial weights)."""
    section = cfg["strategy"]
    cls = strategy_class(section)
    optim = section.get("optim") or cfg["optim"]
    common: dict[str, Any] = {
        "classifier": classifier_factory(cfg["model"], facts),
        "noise": build_noise(cfg["noise"]),
        "optimizer": optimizer_factory(optim),
        "scheduler": scheduler_factory(optim),
        "data": facts,
        "evaluation": Evaluation(int(cfg["eval_seed"]), tuple(float(v) for v in cfg["noise"]["eval_levels"])),
        "seed": seed,
        "frozen": dict(frozen),
    }
    if takes(cls, "denoiser"):
        common["denoiser"] = denoiser_factory(cfg["denoiser"])
    if takes(cls, "frozen_seeds"):
        common["frozen_seeds"] = {role: (frozen_seeds or {}).get(role) for role in frozen}
    module = cls(**as_kwargs(strategy_knobs(section)), **common)
    # a checkpoint says how it was made: the stage's whole config (never built modules)
    module.save_hyperparameters({"cfg": dict(cfg), "data": asdict(facts)})
    return module


# --------------------------------------------------------------------------- loggers and callbacks


def _entries(section: Mapping[str, Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """The ``name: {_target_: ...}`` entries of a ``logger`` or ``callbacks`` section (null entries dropped)."""
    return [(name, entry) for name, entry in (section or {}).items() if entry is not None]


def _with_stage(entry: Mapping[str, Any], stage: StageInfo) -> Any:
    """Build a logger or callback entry, with ``stage=`` where its callable takes it."""
    return _build(entry, stage=stage) if takes(get_object(entry["_target_"]), "stage") else _build(entry)


def build_loggers(cfg: Mapping[str, Any], stage: StageInfo) -> list[Logger]:
    """``logger``: every configured logger of a stage (none: an empty list)."""
    return [_with_stage(entry, stage) for _, entry in _entries(cfg["logger"])]


def build_callbacks(cfg: Mapping[str, Any], stage: StageInfo) -> list[L.Callback]:
    """``callbacks``: the configured callbacks of a stage (a target may return None: not for this stage)."""
    built = [_with_stage(entry, stage) for _, entry in _entries(cfg["callbacks"])]
    return [callback for callback in built if callback is not None]
