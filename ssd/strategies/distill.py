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
teacher view) and checks it against the networks it gets (taps of both, channel widths);
``FeatureDistillation`` adds the teacher *stage*: where it comes from (``role_config``: the
configured one, a teacher at its own noise level, or the previous generation of a born-again
chain), and folding the frozen teacher's BatchNorm into its convolutions for the length of a fit
(``strategy.fold_teacher_bn``). Built on the meta device with meta teachers, the same checks
validate a config before any data is read.
``ssd.strategies.online_distill`` uses an EMA of the student as the teacher instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd.config import Range
from ssd.config.annotations import LossWeight, NoiseStd
from ssd.config.errors import ConfigError
from ssd.models import FeatureTaps, resolve_taps, tap_shapes
from ssd.models.fold import FoldedBatchNorm
from ssd.seeding import as_built_by
from ssd.strategies import teacher_stage
from ssd.strategies.base import NoisyImageModule
from ssd.strategies.losses import DistillationLoss

NonNegative = LossWeight
#: the image the teacher sees: the clean one (STL), the student's noisy one, or a second noise draw
TeacherInput = Literal["clean", "same", "independent"]
#: where a student's weights start: its own random init, its teacher's random init, the trained teacher
StudentInit = Literal["random", "teacher_init", "teacher"]


class LogitKDSettings(TypedDict):
    """``strategy.logit_kd``: Hinton's logit term, added when ``weight > 0``."""

    weight: NonNegative
    temperature: Annotated[float, Range(gt=0)]


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


def _resolve(taps: str | Sequence[str], net: nn.Module, whose: str) -> list[str]:
    """``strategy.taps`` resolved in ``whose`` network, or a ConfigError naming the key."""
    try:
        return list(resolve_taps(taps, net))
    except ValueError as err:
        raise ConfigError(
            f"strategy.taps={taps!r} is not allowed ({whose} {_describe(net)}): {err}"
        ) from None


def _describe(net: nn.Module) -> str:
    net = _unwrapped(net)
    inner = getattr(net, "backbone", net)
    return type(inner).__name__


class Distillation(NoisyImageModule):
    """The student step of every feature-distillation strategy; subclasses say what ``teacher`` is.

    Args (``strategy.<key>``; the common ones are ``NoisyImageModule``'s):
        taps: ``"all"`` (the backbone's named taps), a tap, or a list of named taps and/or dotted
            module paths of the backbone (``layer2.0.conv1``): what is distilled.
        tap_weights: per-tap factors ``w_l`` (null: all 1).
        lambda_: the factor of the summed feature loss (``strategy.lambda``).
        feature_loss: ``mse``, ``nmse`` or ``cosine`` (``ssd.strategies.losses``); ``fused_feature_loss``:
            the faster ``mse``.
        logit_kd: the optional logit term.
        adapter: learned 1x1 convs where student and teacher tap widths differ.
        teacher_input: the image the teacher sees.
    """

    def __init__(
        self,
        *,
        taps: str | list[str],
        tap_weights: Mapping[str, NonNegative] | None,
        lambda_: NonNegative,
        feature_loss: Literal["mse", "nmse", "cosine"],
        fused_feature_loss: bool,
        logit_kd: LogitKDSettings,
        adapter: bool,
        teacher_input: TeacherInput,
        **common: Any,
    ):
        super().__init__(**common)
        self.teacher_input = teacher_input
        teacher = _unwrapped(self.attach_teacher())
        self.tap_names = _resolve(taps, self.net, "student")
        _resolve(self.tap_names, teacher, "teacher")  # the teacher must have them too
        if not self.tap_names and logit_kd["weight"] == 0:
            raise ConfigError(
                f"strategy.taps={taps!r} is not allowed: must name at least one tap unless strategy.logit_kd.weight > 0"
            )
        unknown = sorted(set(tap_weights or {}) - set(self.tap_names))
        if unknown:
            raise ConfigError(
                f"strategy.tap_weights={dict(tap_weights or {})!r} is not allowed: must be null or a mapping from "
                f"distilled taps ({', '.join(self.tap_names)}) to numbers >= 0; not distilled: {', '.join(unknown)}"
            )
        image = (len(self.data.mean), int(self.data.image_size), int(self.data.image_size))
        needed = match_taps(
            tap_shapes(self.net, self.tap_names, image), tap_shapes(teacher, self.tap_names, image), adapter
        )
        #: learned 1x1 convolutions student -> teacher channels, only for taps whose widths differ
        self.adapters = nn.ModuleDict(
            {name: nn.Conv2d(cs, ct, kernel_size=1, bias=False) for name, (cs, ct) in needed.items()}
        )
        self.distill_loss = DistillationLoss(
            self.tap_names,
            feature_loss=feature_loss,
            weight=float(lambda_),
            tap_weights=tap_weights,
            kd_weight=float(logit_kd["weight"]),
            kd_temperature=float(logit_kd["temperature"]),
            fused=fused_feature_loss,
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
    """Student ``self.net`` trained on noisy images to match a frozen teacher stage's features.

    Args (besides ``Distillation``'s):
        student_init: where the student's weights start: ``random`` (its own stage seed's), ``teacher_init``
            (the random weights its teacher stage started from: the student and teacher then share a basis,
            as in a loop that seeds every model with one seed; data order, crops and noise stay the
            student's own) or ``teacher`` (the trained teacher's weights).
        fold_teacher_bn: fold the frozen teacher's BatchNorm into its convolutions for a fit.
        frozen_seeds: the seed each frozen stage trained from (filled in by ssd; None: not a stage ssd
            trained, e.g. ``strategy.teacher.ckpt``).

    Section keys read by the pipeline: ``teacher`` (the stage), ``generations`` (born-again chains)
    and ``teacher_sigma`` (a teacher at its own noise level), see ``ssd.strategies.teacher_stage``.
    """

    requires: ClassVar[tuple[str, ...]] = ("teacher",)
    section_keys: ClassVar[dict[str, Any]] = {
        **Distillation.section_keys,
        "generations": Annotated[int, Range(ge=1)],
        "teacher_sigma": NoiseStd | None,
    }

    def __init__(
        self,
        *,
        student_init: StudentInit,
        fold_teacher_bn: bool,
        frozen_seeds: Mapping[str, int | None],
        **distillation: Any,
    ):
        super().__init__(**distillation)
        self.fold_teacher_bn = fold_teacher_bn
        self._folded: FoldedBatchNorm | None = None
        if student_init == "teacher_init":
            seed = frozen_seeds.get("teacher")
            if seed is None:
                raise ConfigError(
                    "strategy.student_init='teacher_init' is not allowed: the teacher's initial weights are not "
                    "known (a strategy.teacher.ckpt, not a stage ssd trains); use student_init=teacher or random"
                )
            with as_built_by(seed):
                start = self.make_classifier()
            self._load_student(start.state_dict(), student_init)
        elif student_init == "teacher":
            self._load_student(_unwrapped(self.teacher).state_dict(), student_init)

    def _load_student(self, state: Mapping[str, Tensor], student_init: str) -> None:
        try:
            self.net.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0:2]
            raise ConfigError(
                f"strategy.student_init={student_init!r} is not allowed: the teacher's weights do not fit the "
                f"student (needs teacher and student of one architecture; {' '.join(first)})"
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
    def role_config(cls, section: Mapping[str, Any], role: str) -> dict[str, Any]:
        """The section ``{strategy, ckpt, overrides}`` that builds ``role``'s stage (``ssd.strategies.teacher_stage``)."""
        return teacher_stage.role_config(section, role)

    @classmethod
    def method_label(cls, section: Mapping[str, Any]) -> str:
        return teacher_stage.method_label(section)
