"""The interface every strategy implements, and the evaluation they all share.

A strategy is a LightningModule that owns the networks it trains (``self.net`` is the
classifier that is evaluated) plus, read-only, the frozen networks of earlier stages
(``self.frozen``: a teacher, a denoiser, a clean classifier). Subclasses implement only
``training_loss(x, x_noisy, y)``; the common work lives here once:

* training: the training noise is drawn here, once per batch (``trains_on_noise``), so a
  strategy draws again only when it needs a second, independent view;
* stages: the frozen networks of ``required_roles`` are checked to be there before anything is built;
* config: ``check`` runs, in this order, the optional ``strategy.optim`` section, the strategy's
  own keys (``check_config``), each required stage's whole config (ssd.config.validate) and
  then the strategy against those stages (``check_stages``);
* evaluation: what is evaluated, how (fixed per-sample noise, robustness curve, clean
  accuracy) and with which metrics, so that every strategy is measured identically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ssd.noise import NoiseModel, build_noise, fixed_noisy, training_generator
from ssd.seeding import stage_seed
from ssd.strategies.optim import build_optimizer, build_scheduler, check_optim_section


def _level_key(noise: NoiseModel) -> str:
    return f"{noise.level_name}={noise.level:g}"


class NoisyImageModule(L.LightningModule):
    """Base class of all strategies.

    Args:
        cfg: the whole resolved run config as plain containers (stored as hyperparameters,
            so a checkpoint says exactly how it was made).
        data_info: ``num_classes``, ``mean``, ``std``, ``image_size`` of the datamodule.
        frozen: networks of earlier stages, by role (``teacher``, ``denoiser``, ...). They
            are frozen here, kept in eval mode, and left out of this module's checkpoints.
    """

    #: roles of the stages this strategy needs before it can train (read by ssd.pipeline);
    #: each role has a config section ``strategy.<role>`` (``strategy``, ``ckpt``, ``overrides``).
    requires: ClassVar[tuple[str, ...]] = ()
    #: whether training sees noisy images: the base draws the training noise for ``training_loss``
    #: only then (``x_noisy`` is ``x`` otherwise), and the stage-cache key ignores noise otherwise.
    trains_on_noise: ClassVar[bool] = True
    #: top-level config sections besides the common ones that determine what this strategy
    #: trains (added to its stage-cache key), e.g. ``("denoiser",)``.
    config_sections: ClassVar[tuple[str, ...]] = ()
    #: the validation metric that picks the ``best`` checkpoint (maximised).
    monitor: ClassVar[str] = "val/acc"

    def __init__(
        self,
        cfg: Mapping[str, Any],
        data_info: Mapping[str, Any],
        frozen: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__()
        missing = [role for role in self.required_roles(cfg) if role not in (frozen or {})]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs frozen[{missing[0]!r}] (ssd.pipeline trains or loads it)"
            )
        self.save_hyperparameters({"cfg": dict(cfg), "data_info": dict(data_info)})
        self.cfg = cfg
        self.data_info = data_info
        self.noise = build_noise(cfg["noise"])
        #: the seed of this stage's random streams (ssd.seeding: differs between a teacher and its student)
        self.stage_seed = stage_seed(cfg)
        self.frozen = nn.ModuleDict(dict(frozen or {}))
        for net in self.frozen.values():
            net.eval().requires_grad_(False)
        self.net = self.build_net()
        self._train_gen: torch.Generator | None = None
        self._train_gen_epoch = 0
        self._build_metrics()

    # ----------------------------------------------------------------- to override
    @classmethod
    def required_roles(cls, cfg: Mapping[str, Any]) -> tuple[str, ...]:
        """Stages needed for this config (override when they depend on config)."""
        return cls.requires

    @classmethod
    def role_config(cls, cfg: Mapping[str, Any], role: str) -> dict[str, Any]:
        """The section ``{strategy, ckpt, overrides}`` that builds ``role``'s stage (default: ``strategy.<role>``)."""
        return dict(cfg["strategy"][role])

    @classmethod
    def method_label(cls, cfg: Mapping[str, Any]) -> str:
        """The row this run belongs to in a report: the strategy name plus what tells its variants apart."""
        return str(cfg["strategy"]["name"])

    @classmethod
    def trains(cls, cfg: Mapping[str, Any]) -> bool:
        """Whether this config trains anything (False: the stage is evaluated only, no fit)."""
        return True

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Checks of the strategy's own keys (raise ssd.config.ConfigError), before its stages are checked:
        ``required_roles`` and ``role_config`` may read what is checked here."""

    @classmethod
    def check_stages(cls, cfg: Mapping[str, Any], stages: Mapping[str, Mapping[str, Any]]) -> None:
        """Checks of the strategy against its required stages' configs (by role, each already valid),
        e.g. that a teacher's architecture has the tapped layers."""

    def build_net(self) -> nn.Module:
        """The network this strategy trains and evaluates (default: the configured classifier)."""
        return build_classifier_from_cfg(self.cfg, self.data_info)

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

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters handed to the optimizer (everything trainable outside ``frozen``)."""
        frozen = {id(p) for p in self.frozen.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]

    # ----------------------------------------------------------------- the contract's fixed parts
    @classmethod
    def check(cls, cfg: Mapping[str, Any], check_stage: Callable[[str], Mapping[str, Any]]) -> None:
        """The whole check of a config for this strategy (called by ssd.config.validate, not overridden).

        In an order that lets each step trust the ones before: the optional ``strategy.optim``
        section, the strategy's own keys, every required stage (``check_stage(role)`` validates that
        stage's whole config and returns it), then the strategy against those stages.
        """
        if cfg["strategy"].get("optim") is not None:  # optional: null or absent is the run's optim
            check_optim_section(cfg, "strategy.optim")
        cls.check_config(cfg)
        stages = {role: check_stage(role) for role in cls.required_roles(cfg)}
        cls.check_stages(cfg, stages)

    def training_input(self, x: Tensor) -> Tensor:
        """What the trained network sees of a clean batch: one draw of the training noise, or ``x``."""
        return self.add_noise(x) if self.trains_on_noise else x

    def batch_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """``training_loss`` of a clean batch, its training view drawn here once (``training_step`` uses it)."""
        return self.training_loss(x, self.training_input(x), y)

    # ----------------------------------------------------------------- helpers
    def add_noise(self, x: Tensor) -> Tensor:
        """A fresh training-noise draw, from this rank's own stream on the training device.

        The stream is derived afresh every epoch from (seed, rank, epoch) rather than saved in
        checkpoints (which hold rank 0's state only), so a resumed run draws the same noise.
        """
        epoch = int(self.current_epoch)
        if self._train_gen is None or self._train_gen.device != x.device or self._train_gen_epoch != epoch:
            stream = self.global_rank + (epoch << 32)  # distinct for every (rank < 2**32, epoch)
            self._train_gen = training_generator(self.stage_seed, stream, x.device)
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
        optim_cfg = self.optim_config()
        optimizer = build_optimizer(optim_cfg, self.param_groups())
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        per_epoch = max(total // max(int(self.trainer.max_epochs or 1), 1), 1)
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(optimizer, optim_cfg["scheduler"], total, per_epoch),
        }

    def optim_config(self) -> Mapping[str, Any]:
        """``strategy.optim`` when a strategy config sets one (e.g. Adam for a denoiser), else the run's ``optim``."""
        return self.cfg["strategy"].get("optim") or self.cfg["optim"]

    def param_groups(self) -> list[Any]:
        """Optimizer parameter groups; strategies with several lrs override this."""
        return self.trainable_parameters()

    # ----------------------------------------------------------------- evaluation
    def _build_metrics(self) -> None:
        n = int(self.data_info["num_classes"])
        # no per-step argument checks: they call torch.unique and read its length on the host (a device
        # sync every training step); labels are checked once when the data is loaded
        self.train_acc = MulticlassAccuracy(num_classes=n, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes=n, average="micro")
        levels = [float(v) for v in self.cfg["noise"]["eval_levels"]]
        curve = {_level_key(self.noise.at_level(v)): self.noise.at_level(v) for v in levels}
        # what the test epoch measures: name -> noise model (deduplicated by level)
        self.test_noises: dict[str, NoiseModel] = {
            "noisy": self.noise,
            "clean": build_noise({"name": "none"}),
            **curve,
        }
        self.test_accs = nn.ModuleList(
            MulticlassAccuracy(num_classes=n, average="micro") for _ in self.test_noises
        )

    def _eval_logits(self, x: Tensor, idx: Tensor, noise: NoiseModel) -> Tensor:
        return self.predict_logits(fixed_noisy(noise, x, idx, int(self.cfg["eval_seed"])))

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, y, idx = batch
        self.val_acc(self._eval_logits(x, idx, self.noise), y)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._per_image: dict[str, list[Tensor]] = {"idx": [], "correct": [], "correct_clean": []}

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, y, idx = batch
        cache: dict[str, Tensor] = {}
        for (_name, noise), metric in zip(self.test_noises.items(), self.test_accs, strict=True):
            key = noise.describe()
            if key not in cache:  # the training level and clean also appear in the curve
                cache[key] = self._eval_logits(x, idx, noise)
            metric.update(cache[key], y)
        per_image = getattr(self, "_per_image", None)
        if per_image is not None:  # per-image outcomes: paired comparisons over the same test images
            per_image["idx"].append(idx.detach().cpu())
            per_image["correct"].append((cache[self.noise.describe()].argmax(1) == y).cpu())
            clean = self.test_noises["clean"].describe()
            per_image["correct_clean"].append((cache[clean].argmax(1) == y).cpu())

    def _save_per_image(self) -> None:
        """``test_predictions.npz`` in the stage folder (one file per rank under DDP: their union is the test set)."""
        per_image = getattr(self, "_per_image", None)
        if not per_image or not per_image["idx"] or self._trainer is None:
            return
        name = "test_predictions.npz"
        if self.trainer.world_size > 1:
            name = f"test_predictions.rank{self.trainer.global_rank}.npz"
        arrays = {k: torch.cat(v).numpy() for k, v in per_image.items()}
        arrays["idx"] = arrays["idx"].astype(np.int64)
        path = Path(self.trainer.default_root_dir) / name
        tmp = path.with_name(f".{name}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)  # never a half-written file
        self._per_image = None

    def on_test_epoch_end(self) -> None:
        self._save_per_image()
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


def build_classifier_from_cfg(cfg: Mapping[str, Any], data_info: Mapping[str, Any]) -> nn.Module:
    """``cfg.model`` (a ``_target_``) -> classifier for this dataset."""
    return instantiate(
        cfg["model"],
        num_classes=int(data_info["num_classes"]),
        mean=tuple(data_info["mean"]),
        std=tuple(data_info["std"]),
    )
