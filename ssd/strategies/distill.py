"""Feature distillation from a frozen teacher: ``student_teacher`` (STL) and ``self_distill`` (SSD).

One class serves both; they differ only in config (``conf/strategy/*.yaml``): which
strategy trains the teacher stage (``clean`` for STL, ``vanilla`` at the run's noise for
SSD) and which image the teacher sees (``teacher_input``):

* ``clean``: the clean image ``x`` (STL),
* ``same``: the student's own noisy image ``x~`` (SSD as usually read),
* ``independent``: a second, independent noise draw of the same clean image.

The student loss is ``CE(S(x~), y) + lambda * sum_l w_l * loss(F_l(S, x~), sg F_l(T, x_t))``
(+ an optional logit term, see ``ssd.strategies.losses``). Features come from forward hooks
(``ssd.models.FeatureTaps``) in the same pass that gives the logits. The teacher is frozen:
no gradients, eval-mode BatchNorm (``NoisyImageModule.train``), not in the optimizer, run
under ``torch.no_grad`` inside the training step's autocast, i.e. in the training precision
(``inference_mode`` tensors could not be saved for the student's backward).

``Distillation`` holds the step every distillation strategy shares (taps, adapters, loss,
teacher view) and the checks of its keys; ``FeatureDistillation`` adds the teacher *stage*:
where it comes from (``role_config``: the configured one, a teacher at its own noise level, or
the previous generation of a born-again chain), the checks against the teacher stage's config
(``check_stages``: taps and widths of its architecture), and folding the frozen teacher's
BatchNorm into its convolutions for the length of a fit (``strategy.fold_teacher_bn``).
``ssd.strategies.online_distill`` uses an EMA of the student as the teacher instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd.config.checks import is_number, require, require_bool, require_choice, require_number
from ssd.config.errors import ConfigError
from ssd.models import ARCHITECTURES, FeatureTaps, resolve_taps, tap_shapes
from ssd.models.fold import FoldedBatchNorm
from ssd.strategies import teacher_stage
from ssd.strategies.base import NoisyImageModule
from ssd.strategies.losses import FEATURE_LOSSES, DistillationLoss

TEACHER_INPUTS = ("clean", "same", "independent")


def _unwrapped(net: nn.Module) -> nn.Module:
    return getattr(net, "_orig_mod", net)  # a torch.compile wrapper


def match_taps(
    student: Mapping[str, tuple[int, ...]], teacher: Mapping[str, tuple[int, ...]], adapter: bool
) -> dict[str, tuple[int, int]]:
    """Check per-sample tap shapes; return ``{tap: (student_channels, teacher_channels)}`` needing a 1x1 adapter.

    Equal shapes need nothing. A channel mismatch needs ``adapter=True``; a spatial
    mismatch is never fixed (1x1 convolutions do not resize).
    """
    needed: dict[str, tuple[int, int]] = {}
    for name, s in student.items():
        t = teacher[name]
        if s == t:
            continue
        if len(s) != len(t) or s[1:] != t[1:]:
            raise ConfigError(
                f"strategy.taps: tap {name!r} has student shape {s} but teacher shape {t}; only channels can be adapted"
            )
        if not adapter:
            raise ConfigError(
                f"strategy.adapter=False is not allowed: tap {name!r} has {s[0]} student channels but {t[0]} "
                "teacher channels; set strategy.adapter=true (learned 1x1 adapters) or use teacher and student of the same width"
            )
        needed[name] = (s[0], t[0])
    return needed


class Distillation(NoisyImageModule):
    """The student step of every feature-distillation strategy; subclasses say what ``teacher`` is."""

    def __init__(
        self,
        cfg: Mapping[str, Any],
        data_info: Mapping[str, Any],
        frozen: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__(cfg, data_info, frozen)
        strategy_cfg = cfg["strategy"]
        self.teacher_input = str(strategy_cfg["teacher_input"])
        teacher = _unwrapped(self.attach_teacher())
        self.tap_names = resolve_taps(strategy_cfg["taps"], self.net.taps)
        resolve_taps(self.tap_names, teacher.taps)  # the teacher must have them too
        image = (len(data_info["mean"]), int(data_info["image_size"]), int(data_info["image_size"]))
        needed = match_taps(
            tap_shapes(self.net, self.tap_names, image),
            tap_shapes(teacher, self.tap_names, image),
            bool(strategy_cfg["adapter"]),
        )
        #: learned 1x1 convolutions student -> teacher channels, only for taps whose widths differ
        self.adapters = nn.ModuleDict(
            {name: nn.Conv2d(cs, ct, kernel_size=1, bias=False) for name, (cs, ct) in needed.items()}
        )
        kd = strategy_cfg["logit_kd"]
        self.distill_loss = DistillationLoss(
            self.tap_names,
            feature_loss=strategy_cfg["feature_loss"],
            weight=float(strategy_cfg["lambda"]),
            tap_weights=strategy_cfg["tap_weights"],
            kd_weight=float(kd["weight"]),
            kd_temperature=float(kd["temperature"]),
            fused=bool(strategy_cfg["fused_feature_loss"]),
        )
        self._student_taps: FeatureTaps | None = None
        self._teacher_taps: FeatureTaps | None = None

    # ------------------------------------------------------------------ what subclasses decide
    def attach_teacher(self) -> nn.Module:
        """Make ``self.teacher`` available (called once, after the student is built) and return it."""
        raise NotImplementedError

    @property
    def teacher(self) -> nn.Module:
        raise NotImplementedError

    def distill_scale(self) -> float:
        """Factor of the whole distillation term at this step (1; a warm-up ramps it)."""
        return 1.0

    def prepare_teacher(self, x: Tensor) -> None:
        """Called before the first training step of a fit, with its batch (e.g. to fold BatchNorm)."""

    def release_teacher(self) -> None:
        """Undo ``prepare_teacher`` (end of fit/test)."""

    # ------------------------------------------------------------------ config
    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The keys of the student step every distillation strategy shares (taps: of the student's architecture)."""
        super().check_config(cfg)
        strategy_cfg = cfg["strategy"]
        require_choice(cfg, "strategy.teacher_input", TEACHER_INPUTS)
        require_number(cfg, "strategy.lambda", low=0)
        require_choice(cfg, "strategy.feature_loss", FEATURE_LOSSES)
        require_number(cfg, "strategy.logit_kd.weight", low=0)
        temperature = strategy_cfg["logit_kd"]["temperature"]
        require(
            is_number(temperature) and temperature > 0,
            "strategy.logit_kd.temperature",
            temperature,
            "must be a number > 0",
        )
        for flag in ("adapter", "fused_feature_loss"):
            require_bool(cfg, f"strategy.{flag}")
        taps = strategy_cfg["taps"]
        require(
            isinstance(taps, str) or (isinstance(taps, list) and all(isinstance(t, str) for t in taps)),
            "strategy.taps",
            taps,
            "must be 'all', a tap name or a list of tap names",
        )
        names = cls.tap_names_of(cfg, cfg["model"]["arch"], "student")
        require(
            bool(names) or strategy_cfg["logit_kd"]["weight"] > 0,
            "strategy.taps",
            taps,
            "must name at least one tap unless strategy.logit_kd.weight > 0",
        )
        tap_weights = strategy_cfg["tap_weights"]
        require(
            tap_weights is None
            or (
                isinstance(tap_weights, Mapping)
                and all(k in names and is_number(v) and v >= 0 for k, v in tap_weights.items())
            ),
            "strategy.tap_weights",
            tap_weights,
            f"must be null or a mapping from distilled taps ({', '.join(names)}) to numbers >= 0",
        )

    @staticmethod
    def tap_names_of(cfg: Mapping[str, Any], arch: str, whose: str) -> list[str]:
        """``strategy.taps`` resolved in architecture ``arch`` (the ``whose`` network's), or a ConfigError."""
        taps = cfg["strategy"]["taps"]
        try:
            return resolve_taps(taps, ARCHITECTURES[arch].taps)
        except ValueError as err:
            raise ConfigError(f"strategy.taps={taps!r} is not allowed ({whose} {arch}): {err}") from None

    @classmethod
    def check_teacher_taps(cls, cfg: Mapping[str, Any], teacher_arch: str) -> None:
        """The distilled taps exist in the teacher's architecture too, with shapes the student can match."""
        student_arch = cfg["model"]["arch"]
        names = cls.tap_names_of(cfg, student_arch, "student")
        try:
            resolve_taps(names, ARCHITECTURES[teacher_arch].taps)
        except ValueError as err:
            raise ConfigError(
                f"strategy.taps={cfg['strategy']['taps']!r} is not allowed (student {student_arch}, "
                f"teacher {teacher_arch}): {err}"
            ) from None
        if student_arch != teacher_arch and names:
            size = int(cfg["data"].get("image_size", 32))  # optional: CIFAR configs leave it out
            shapes = [
                tap_shapes(ARCHITECTURES[a].build(10), names, (3, size, size), ARCHITECTURES[a].taps)
                for a in (student_arch, teacher_arch)
            ]
            match_taps(shapes[0], shapes[1], bool(cfg["strategy"]["adapter"]))

    # ------------------------------------------------------------------ training
    def _feature_taps(self, x: Tensor) -> tuple[FeatureTaps, FeatureTaps]:
        """Hooks on student and teacher, installed on first use (so a spawned copy installs its own)."""
        if self._student_taps is None or self._teacher_taps is None:
            self.prepare_teacher(x)
            self._student_taps = FeatureTaps(self.net, self.tap_names)
            self._teacher_taps = FeatureTaps(self.teacher, self.tap_names)
            self._student_taps.disable()
            self._teacher_taps.disable()
        return self._student_taps, self._teacher_taps

    def teardown(self, stage: str) -> None:
        """Remove the hooks after fit/test and undo ``prepare_teacher``; a later training step redoes both."""
        for taps in (self._student_taps, self._teacher_taps):
            if taps is not None:
                taps.remove()
        self._student_taps = self._teacher_taps = None
        self.release_teacher()

    @staticmethod
    def _forward(net: nn.Module, taps: FeatureTaps, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and tapped features of one forward pass (taps record only here)."""
        taps.enable()
        try:
            logits = net(x)
            return logits, taps.pop() if taps.names else {}
        finally:
            taps.disable()

    def teacher_view(self, x: Tensor, x_noisy: Tensor) -> Tensor:
        """The image the teacher sees for clean ``x`` whose student view is ``x_noisy``."""
        if self.teacher_input == "clean":
            return x
        if self.teacher_input == "same":
            return x_noisy
        return self.add_noise(x)  # independent: the next draw of this rank's training-noise stream

    def training_loss(
        self, x: Tensor, x_noisy: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        student_taps, teacher_taps = self._feature_taps(x)
        x_teacher = self.teacher_view(x, x_noisy)
        with torch.no_grad():
            teacher_logits, teacher_features = self._forward(self.teacher, teacher_taps, x_teacher)
        logits, student_features = self._forward(self.net, student_taps, x_noisy)
        student_features = {
            k: self.adapters[k](v) if k in self.adapters else v for k, v in student_features.items()
        }
        distill, terms = self.distill_loss(student_features, teacher_features, logits, teacher_logits)
        ce = F.cross_entropy(logits, y)
        scale = self.distill_scale()
        if scale != 1.0:
            distill = scale * distill
            terms["distill_scale"] = torch.tensor(scale)
        return ce + distill, logits, {"ce": ce.detach(), **terms}


class FeatureDistillation(Distillation):
    """Student ``self.net`` trained on noisy images to match a frozen teacher stage's features."""

    requires: ClassVar[tuple[str, ...]] = ("teacher",)

    def __init__(
        self,
        cfg: Mapping[str, Any],
        data_info: Mapping[str, Any],
        frozen: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__(cfg, data_info, frozen)
        strategy_cfg = cfg["strategy"]
        self.fold_teacher_bn = bool(strategy_cfg["fold_teacher_bn"])
        self._folded: FoldedBatchNorm | None = None
        if strategy_cfg["init_from_teacher"]:
            try:
                self.net.load_state_dict(_unwrapped(self.teacher).state_dict())
            except RuntimeError as err:
                raise ConfigError(
                    f"strategy.init_from_teacher=True is not allowed: the teacher's weights do not fit the student ({err})"
                ) from None

    def attach_teacher(self) -> nn.Module:
        return self.teacher  # there: the base class checks the required roles

    @property
    def teacher(self) -> nn.Module:
        return self.frozen["teacher"]

    def prepare_teacher(self, x: Tensor) -> None:
        """Fold the frozen teacher's BatchNorm into its convolutions for this fit (one pass fewer per layer).

        In place and undone at teardown, so the caller's teacher, its hooks and its state dict are the
        same objects and values before and after a fit.
        """
        if self.fold_teacher_bn and self._folded is None:
            self._folded = FoldedBatchNorm(_unwrapped(self.teacher), x)

    def release_teacher(self) -> None:
        if self._folded is not None:
            self._folded.restore()
            self._folded = None

    # ------------------------------------------------------------------ the teacher stage
    @classmethod
    def role_config(cls, cfg: Mapping[str, Any], role: str) -> dict[str, Any]:
        """The section ``{strategy, ckpt, overrides}`` that builds ``role``'s stage (``ssd.strategies.teacher_stage``)."""
        return teacher_stage.role_config(cfg, role)

    @classmethod
    def method_label(cls, cfg: Mapping[str, Any]) -> str:
        return teacher_stage.method_label(cfg)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The student step's keys and what the teacher stage is derived from (before that stage is checked)."""
        super().check_config(cfg)
        for flag in ("init_from_teacher", "fold_teacher_bn"):
            require_bool(cfg, f"strategy.{flag}")
        teacher_stage.check_config(cfg)

    @classmethod
    def check_stages(cls, cfg: Mapping[str, Any], stages: Mapping[str, Mapping[str, Any]]) -> None:
        """The student against its (valid) teacher stage: taps, channel widths, ``init_from_teacher``."""
        student_arch, teacher_arch = cfg["model"]["arch"], stages["teacher"]["model"]["arch"]
        cls.check_teacher_taps(cfg, teacher_arch)
        if cfg["strategy"]["init_from_teacher"]:
            require(
                student_arch == teacher_arch,
                "strategy.init_from_teacher",
                True,
                f"needs teacher and student of one architecture (student {student_arch}, teacher {teacher_arch})",
            )
