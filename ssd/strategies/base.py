"""The interface every strategy implements, and the evaluation they all share.

A strategy is a LightningModule built by ``ssd.parts.build_strategy`` from its config section:
the section's keys arrive as typed keyword arguments (``strategy.lambda`` as ``lambda_``), and
ssd fills in what every strategy gets:

* ``classifier``: builds a fresh classifier of the configured ``model`` for this data;
* ``noise``: the training noise model; ``seed``: the stage seed of the training-noise stream;
* ``optimizer``, ``scheduler``: the configured optimizer and schedule, to be finished with
  parameters and step counts (``configure_optimizers`` here does it);
* ``data``: the data facts (classes, image size, channel mean/std);
* ``evaluation``: the fixed evaluation noise's seed and the robustness curve's levels;
* ``frozen``: the trained networks of the stages it requires, by role (eval mode, no gradients);
* ``denoiser``: builds the configured denoiser (only for a strategy whose ``__init__`` takes it).

A new strategy MUST write one method: ``training_loss(x, x_noisy, y) -> (loss, logits, logs)``.
The base draws the training noise once per batch (none when ``trains_on_noise = False``), so
only a second, independent view is drawn in a strategy. It MAY set or override:

* ``requires`` (ClassVar): roles of the stages it needs first; each role has a section
  ``strategy.<role>: {strategy, ckpt, overrides}`` that ``ssd.pipeline`` trains or loads;
* ``role_config(section, role)``: that section, when it is derived (a born-again chain);
* ``section_keys`` (ClassVar): other keys of its section that ssd reads rather than passes to
  ``__init__`` (typed, like parameters), e.g. ``generations``;
* ``method_label(section)``: its row in a report (default: ``strategy.name``);
* ``trains`` / ``trains_on_noise`` / ``monitor`` (ClassVars): evaluation only; clean training
  images; the validation metric that picks ``best.ckpt``;
* ``build_net()``, ``predict_logits(x_noisy)``, ``param_groups()``: what is trained and evaluated;
* ``stage_state()`` / ``load_stage_state(state)``: tensors besides ``net`` that evaluating the
  stage needs (an EMA teacher), saved with the stage.

Checks of its own keys live in its signature's annotations (``Annotated[float, Range(ge=0)]``,
``Literal``); checks across keys or against the networks live in ``__init__`` and raise
``ConfigError`` naming the YAML key: ssd builds every strategy on the meta device to validate a
config, so they run before any data is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NotRequired, TypedDict

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from ssd.data.protocol import DataFacts
from ssd.noise import NoiseModel, NoNoise, fixed_noisy
from ssd.results import write_atomic
from ssd.seeding import generator

#: ``optimizer(params)``: the configured optimizer for these parameters (or parameter groups)
OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
#: ``scheduler(optimizer, total_steps, steps_per_epoch)``: the configured schedule, stepped per optimizer step
SchedulerFactory = Callable[[torch.optim.Optimizer, int, int], torch.optim.lr_scheduler.LRScheduler]


class RoleSection(TypedDict):
    """``strategy.<role>``: the stage a role needs."""

    #: the conf/strategy/<name>.yaml that trains it (or, derived by ``role_config``, a whole strategy section)
    strategy: str | Mapping[str, Any]
    #: a net.pt or Lightning .ckpt to use instead of training or looking up the stage
    ckpt: NotRequired[str | None]
    #: merged into the stage's run config (never ``data``)
    overrides: NotRequired[Mapping[str, Any] | None]


@dataclass(frozen=True)
class Evaluation:
    """How every strategy is evaluated: the seed of the fixed per-image noise, the robustness curve's levels."""

    seed: int
    levels: tuple[float, ...]


#: the test views with a confusion matrix: the training noise level and clean images (``test_noises`` keys)
CONFUSION = ("noisy", "clean")
#: the per-image arrays of ``test_predictions.npz`` (read by ``ssd.report.predictions``), besides ``classes``
PER_IMAGE = ("idx", "correct", "correct_clean", "pred", "pred_clean", "label")


def _level_key(noise: NoiseModel) -> str:
    return f"{noise.level_name}={noise.level:g}"


class NoisyImageModule(L.LightningModule):
    """Base class of all strategies (see the module docstring for what a subclass writes)."""

    #: roles of the stages this strategy needs before it can train (read by ssd.pipeline)
    requires: ClassVar[tuple[str, ...]] = ()
    #: whether the stage trains (False: it is evaluated only, e.g. a frozen denoiser + classifier)
    trains: ClassVar[bool] = True
    #: whether training sees noisy images: the base draws the training noise for ``training_loss``
    #: only then (``x_noisy`` is ``x`` otherwise), and the stage-cache key ignores noise otherwise.
    trains_on_noise: ClassVar[bool] = True
    #: the validation metric that picks the ``best`` checkpoint (maximised).
    monitor: ClassVar[str] = "val/acc"
    #: keys of the strategy section that ssd reads itself (never ``__init__`` arguments), by type;
    #: a role of ``requires`` adds its ``RoleSection`` (``section_annotations``)
    section_keys: ClassVar[dict[str, Any]] = {"name": str, "optim": Mapping[str, Any] | None}

    def __init__(
        self,
        *,
        classifier: Callable[[], nn.Module],
        noise: NoiseModel,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory,
        data: DataFacts,
        evaluation: Evaluation,
        seed: int,
        frozen: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__()
        missing = [role for role in self.requires if role not in (frozen or {})]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs frozen[{missing[0]!r}] (ssd.pipeline trains or loads it)"
            )
        self.make_classifier = classifier
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.noise = noise
        self.data = data
        self.evaluation = evaluation
        #: the seed of this stage's random streams (ssd.seeding: differs between a teacher and its student)
        self.stage_seed = int(seed)
        self.frozen = nn.ModuleDict(dict(frozen or {}))
        for net in self.frozen.values():
            net.eval().requires_grad_(False)
        self.net = self.build_net()
        self._train_gen: torch.Generator | None = None
        self._train_gen_epoch = 0
        self._build_metrics()

    # ----------------------------------------------------------------- stages (class level, read by ssd.pipeline)
    @classmethod
    def section_annotations(cls) -> dict[str, Any]:
        """Every key of the section ssd reads itself, typed: ``section_keys`` plus a section per role."""
        return {**cls.section_keys, **{role: RoleSection for role in cls.requires}}

    @classmethod
    def role_config(cls, section: Mapping[str, Any], role: str) -> dict[str, Any]:
        """The section ``{strategy, ckpt, overrides}`` that builds ``role``'s stage (default: ``strategy.<role>``)."""
        return dict(section[role])

    @classmethod
    def method_label(cls, section: Mapping[str, Any]) -> str:
        """The row this run belongs to in a report: the strategy name plus what tells its variants apart."""
        return str(section["name"])

    # ----------------------------------------------------------------- to override
    def build_net(self) -> nn.Module:
        """The network this strategy trains and evaluates (default: a fresh classifier)."""
        return self.make_classifier()

    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """Loss on a batch: clean ``x`` in [0,1], its training view ``x_noisy`` (one draw of the training
        noise, or ``x`` itself when ``trains_on_noise`` is False) and labels ``y``.

        Returns (loss, logits or None for a network without class scores, extra terms to log).
        """
        raise NotImplementedError

    def predict_logits(self, x_noisy: Tensor) -> Tensor:
        """What evaluation classifies: by default the trained classifier on the noisy image."""
        return self.net(x_noisy)

    def param_groups(self) -> list[Any]:
        """Optimizer parameters or groups (default: everything trainable outside ``frozen``)."""
        frozen = {id(p) for p in self.frozen.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]

    def stage_state(self) -> dict[str, Tensor]:
        """Tensors besides ``net``'s weights that evaluating this stage needs (saved as the stage's ``extra.pt``)."""
        return {}

    def load_stage_state(self, state: Mapping[str, Tensor]) -> None:
        """Put back what ``stage_state`` saved."""

    # ----------------------------------------------------------------- the training noise
    def training_input(self, x: Tensor) -> Tensor:
        """What the trained network sees of a clean batch: one draw of the training noise, or ``x``."""
        return self.add_noise(x) if self.trains_on_noise else x

    def batch_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """``training_loss`` of a clean batch, its training view drawn here once (``training_step`` uses it)."""
        return self.training_loss(x, self.training_input(x), y)

    def add_noise(self, x: Tensor) -> Tensor:
        """A fresh training-noise draw from this rank's ``noise`` stream of the epoch (``ssd.seeding``),
        on the training device; derived afresh each epoch, so a resumed run draws the same noise."""
        epoch = int(self.current_epoch)
        if self._train_gen is None or self._train_gen.device != x.device or self._train_gen_epoch != epoch:
            self._train_gen = generator(self.stage_seed, "noise", self.global_rank, epoch, x.device)
            self._train_gen_epoch = epoch
        return self.noise(x, generator=self._train_gen)

    def train(self, mode: bool = True) -> NoisyImageModule:
        """Keep frozen stages in eval mode whatever Lightning does (Lightning #2551, #18930)."""
        super().train(mode)
        for net in self.frozen.values():
            net.eval()
        return self

    # ----------------------------------------------------------------- training
    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y, _ = batch
        loss, logits, extra = self.batch_loss(x, y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/loss_epoch", loss.detach(), on_step=False, on_epoch=True)  # the epoch mean
        if logits is not None:  # a network with class scores (not a denoiser)
            # update only: forward() would also compute a batch value
            self.train_acc.update(logits.detach(), y)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        for name, value in extra.items():
            self.log(f"train/{name}", value.detach(), on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.make_optimizer(self.param_groups())
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = max(total // max(int(self.trainer.max_epochs or 1), 1), 1)
        schedule = self.make_scheduler(optimizer, total, per_epoch)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1},
        }

    # ----------------------------------------------------------------- evaluation
    def _build_metrics(self) -> None:
        n = int(self.data.num_classes)
        # no per-step argument checks: they call torch.unique and read its length on the host (a device
        # sync every training step); labels are checked once when the data is loaded
        self.train_acc = MulticlassAccuracy(num_classes=n, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro")
        curve = {_level_key(self.noise.at_level(v)): self.noise.at_level(v) for v in self.evaluation.levels}
        # what the test epoch measures: name -> noise model (deduplicated by level)
        self.test_noises: dict[str, NoiseModel] = {"noisy": self.noise, "clean": NoNoise(), **curve}
        self.test_accs = nn.ModuleList(
            MulticlassAccuracy(num_classes=n, average="micro") for _ in self.test_noises
        )
        # counts (row = true class, column = predicted) at the training noise level and on clean images;
        # metric states are not part of the state dict, so checkpoints and weights are unchanged
        self.test_confusion = nn.ModuleDict({k: MulticlassConfusionMatrix(num_classes=n) for k in CONFUSION})
        #: after a test epoch: ``class_results`` of it (results.json ``per_class``), else None
        self.per_class: dict[str, Any] | None = None

    def eval_noisy(self, x: Tensor, idx: Tensor, noise: NoiseModel | None = None) -> Tensor:
        """``x`` under the fixed evaluation noise (per image: evaluation seed and index) of ``noise``."""
        return fixed_noisy(self.noise if noise is None else noise, x, idx, self.evaluation.seed)

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, y, idx = batch
        self.val_acc(self.predict_logits(self.eval_noisy(x, idx)), y)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._per_image: dict[str, list[Tensor]] = {k: [] for k in PER_IMAGE}

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, y, idx = batch
        cache: dict[str, Tensor] = {}
        for (_name, noise), metric in zip(self.test_noises.items(), self.test_accs, strict=True):
            key = noise.describe()
            if key not in cache:  # the training level and clean also appear in the curve
                cache[key] = self.predict_logits(self.eval_noisy(x, idx, noise))
            metric.update(cache[key], y)
        pred = {k: cache[self.test_noises[k].describe()].argmax(1) for k in CONFUSION}
        for k in CONFUSION:
            self.test_confusion[k].update(pred[k], y)
        per_image = getattr(self, "_per_image", None)
        if per_image is not None:  # per-image outcomes: paired comparisons, per-class analyses
            outcome = {
                "idx": idx,
                "correct": pred["noisy"] == y,
                "correct_clean": pred["clean"] == y,
                "pred": pred["noisy"],
                "pred_clean": pred["clean"],
                "label": y,
            }
            for k, v in outcome.items():
                per_image[k].append(v.detach().cpu())

    def _save_per_image(self) -> None:
        """``test_predictions.npz`` in the stage folder (one file per rank under DDP: their union is the test set)."""
        per_image = getattr(self, "_per_image", None)
        if not per_image or not per_image["idx"] or self._trainer is None:
            return
        name = "test_predictions.npz"
        if self.trainer.world_size > 1:
            name = f"test_predictions.rank{self.trainer.global_rank}.npz"
        arrays = {k: torch.cat(v).numpy() for k, v in per_image.items()}
        for k in ("idx", "pred", "pred_clean", "label"):
            arrays[k] = arrays[k].astype(np.int64)
        names = self.class_names()
        if names is not None:
            arrays["classes"] = np.array(names)
        write_atomic(
            Path(self.trainer.default_root_dir) / name, lambda handle: np.savez_compressed(handle, **arrays)
        )
        self._per_image = None

    def class_names(self) -> list[str] | None:
        """The test data's class names (a datamodule's ``classes``), when it has one per class."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(datamodule, "classes", None)
        return [str(c) for c in names] if names and len(names) == self.data.num_classes else None

    def class_results(self) -> dict[str, Any]:
        """Per-class accuracy (a fraction, as ``test/acc``; None for a class without test images) and the confusion matrix (counts,
        row = true class, column = predicted) of the test epoch, at the training noise and clean; every
        rank's images together (torchmetrics syncs). Resets the matrices."""
        out: dict[str, Any] = {"classes": self.class_names()}
        for k in CONFUSION:
            counts = self.test_confusion[k].compute().long().cpu()
            self.test_confusion[k].reset()
            totals = counts.sum(1)
            out[k] = {
                "accuracy": [
                    None if int(t) == 0 else float(counts[i, i]) / float(t) for i, t in enumerate(totals)
                ],
                "confusion": counts.tolist(),
            }
        return out

    def on_test_epoch_end(self) -> None:
        self._save_per_image()
        self.per_class = self.class_results()
        for name, metric in zip(self.test_noises, self.test_accs, strict=True):
            metric_name = (
                "test/acc" if name == "noisy" else f"test/acc_{name}" if name == "clean" else f"curve/{name}"
            )
            self.log(metric_name, metric.compute(), sync_dist=False)
            metric.reset()

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Frozen stages are recorded by reference (ssd.pipeline), not copied into every checkpoint."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("frozen.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the (already loaded) frozen stages back so strict loading still checks the rest."""
        checkpoint["state_dict"].update(
            {k: v for k, v in self.state_dict().items() if k.startswith("frozen.")}
        )
