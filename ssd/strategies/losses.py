"""Feature-distillation losses: a registry of per-tap losses and their weighted sum.

Each per-tap loss takes the student's and the (detached) teacher's feature maps of one
tap, ``[N, C, ...]``, and returns a scalar. They are computed in float32 whatever the
autocast dtype of the features (bf16 squares of small differences lose most of their bits).

* ``mse``: mean over all elements of ``(s - t)^2`` (public STL re-implementations).
* ``nmse``: squared distance of the per-sample L2-normalised feature maps,
  ``||s_i/|s_i| - t_i/|t_i|||^2`` averaged over the batch (in [0, 4]; blind to each
  sample's feature scale, so no tap dominates just because its activations are large).
* ``cosine``: ``1 - cos(s, t)`` between the channel vectors at each spatial position,
  averaged over positions and batch (matches where features point, not their size).

``DistillationLoss`` combines them as ``lambda * sum_l w_l * loss(F_l(S), F_l(T))`` plus an
optional Hinton logit term ``kd_weight * T^2 * KL(softmax(t/T) || softmax(s/T))``.

``fused_mse`` is ``mse`` in three passes over the features instead of about ten: the difference
is taken once in the features' own dtype and kept for the backward, whose gradient is one
scaled copy of it; squares are summed with float32 accumulation. It computes the same value
as ``mse`` (in float32 up to summation order; within bf16 rounding of the difference for bf16 features)
and is what a distillation step uses unless ``strategy.fused_feature_loss=false``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

FeatureLoss = Callable[[Tensor, Tensor], Tensor]

_EPS = 1e-8


def mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over all elements of the squared difference."""
    return F.mse_loss(student.float(), teacher.float())


def nmse(student: Tensor, teacher: Tensor) -> Tensor:
    """Squared distance of per-sample L2-normalised features, averaged over the batch."""
    s = F.normalize(student.float().flatten(1), dim=1, eps=_EPS)
    t = F.normalize(teacher.float().flatten(1), dim=1, eps=_EPS)
    return (s - t).pow(2).sum(dim=1).mean()


def cosine(student: Tensor, teacher: Tensor) -> Tensor:
    """``1 - cosine similarity`` of channel vectors (dim 1) per position, averaged."""
    return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1, eps=_EPS)).mean()


class _SquaredError(torch.autograd.Function):
    """Mean squared difference whose backward is a scaled copy of the difference saved in forward."""

    @staticmethod
    def forward(ctx: Any, student: Tensor, teacher: Tensor) -> Tensor:
        with torch.autocast(student.device.type, enabled=False):
            diff = student.detach() - teacher.detach().to(student.dtype)
            value = torch.sum(diff * diff, dtype=torch.float32) / diff.numel()
        ctx.save_for_backward(diff)
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (diff,) = ctx.saved_tensors
        return diff * (grad * (2.0 / diff.numel())).to(diff.dtype), None


def fused_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """``mse`` computed in fewer passes (no float32 copies of the features); the teacher gets no gradient."""
    return _SquaredError.apply(student, teacher)


#: config name (``strategy.feature_loss``) -> per-tap loss
FEATURE_LOSSES: dict[str, FeatureLoss] = {"mse": mse, "nmse": nmse, "cosine": cosine}
#: faster implementations of the same losses (``strategy.fused_feature_loss``); others use the reference
FUSED_FEATURE_LOSSES: dict[str, FeatureLoss] = {"mse": fused_mse}


def logit_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al. (2015): ``T^2 * KL(softmax(t/T) || softmax(s/T))``, mean over the batch."""
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


class DistillationLoss:
    """``lambda * sum_l w_l * loss_l`` over taps, plus an optional logit-distillation term.

    Args:
        taps: tap names in network order (the keys the feature dicts carry).
        feature_loss: a name in ``FEATURE_LOSSES``.
        weight: ``lambda``, the factor of the whole feature term.
        tap_weights: optional per-tap factors ``w_l``; taps not listed get 1.
        kd_weight, kd_temperature: the logit term (skipped entirely when the weight is 0).
        fused: use ``FUSED_FEATURE_LOSSES[feature_loss]`` where there is one (same value, less work).

    The defaults are neutral (the plain sum of the feature losses, no logit term, the reference
    implementation); the recipe's values live in ``conf/strategy``.
    """

    def __init__(
        self,
        taps: Sequence[str],
        feature_loss: str,
        weight: float = 1.0,
        tap_weights: Mapping[str, float] | None = None,
        kd_weight: float = 0.0,
        kd_temperature: float = 1.0,
        fused: bool = False,
    ) -> None:
        if feature_loss not in FEATURE_LOSSES:
            raise ValueError(
                f"feature loss {feature_loss!r} is not known; valid: {', '.join(FEATURE_LOSSES)}"
            )
        unknown = sorted(set(tap_weights or {}) - set(taps))
        if unknown:
            raise ValueError(
                f"tap_weights name taps that are not distilled: {unknown}; distilled taps: {list(taps)}"
            )
        self.taps = list(taps)
        self.loss_name = feature_loss
        self.loss_fn = (FUSED_FEATURE_LOSSES if fused else FEATURE_LOSSES).get(
            feature_loss, FEATURE_LOSSES[feature_loss]
        )
        self.weight = float(weight)
        self.tap_weights = {name: float((tap_weights or {}).get(name, 1.0)) for name in self.taps}
        self.kd_weight = float(kd_weight)
        self.kd_temperature = float(kd_temperature)

    def __call__(
        self,
        student_features: Mapping[str, Tensor],
        teacher_features: Mapping[str, Tensor],
        student_logits: Tensor | None = None,
        teacher_logits: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(total distillation loss, named terms for logging: ``feat``, ``feat/<tap>``, ``kd``)."""
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name in self.taps:
            s, t = student_features[name], teacher_features[name]
            if s.shape != t.shape:
                raise ValueError(
                    f"tap {name!r}: student features {tuple(s.shape)} vs teacher {tuple(t.shape)}"
                )
            term = self.loss_fn(s, t)
            terms[f"feat/{name}"] = term.detach()
            weighted = self.tap_weights[name] * term
            total = weighted if total is None else total + weighted
        if total is None:  # no taps: logit distillation only
            device = student_logits.device if student_logits is not None else None
            total = torch.zeros((), device=device)
        feat = self.weight * total
        terms["feat"] = feat.detach()
        if self.kd_weight > 0:
            if student_logits is None or teacher_logits is None:
                raise ValueError("logit distillation needs student and teacher logits")
            kd = self.kd_weight * logit_kd(student_logits, teacher_logits, self.kd_temperature)
            terms["kd"] = kd.detach()
            feat = feat + kd
        return feat, terms
