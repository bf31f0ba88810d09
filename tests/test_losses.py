"""Feature-distillation losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from ssd.strategies.losses import (
    FEATURE_LOSSES,
    FUSED_FEATURE_LOSSES,
    DistillationLoss,
    cosine,
    fused_mse,
    logit_kd,
    mse,
    nmse,
)


def test_registry_names() -> None:
    assert set(FEATURE_LOSSES) == {"mse", "nmse", "cosine"}


def test_mse_is_mean_over_elements() -> None:
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # 1x1x2x2
    t = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # squared differences 0, 4, 9, 16 -> mean 29 / 4
    assert mse(s, t).item() == pytest.approx(7.25)


def test_nmse_normalises_each_sample() -> None:
    s = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    # sample 0: (0.6, 0.8) vs (1, 0): 0.16 + 0.64 = 0.8; sample 1: (0, 1) vs (0, 1): 0
    assert nmse(s, t).item() == pytest.approx(0.4)
    assert nmse(10 * s, 0.1 * t).item() == pytest.approx(0.4)  # blind to scale


def test_cosine_per_position_over_channels() -> None:
    # N=1, C=2, H=1, W=2: position 0 student (1,0) teacher (0,1) -> cos 0; position 1 (1,1) vs (2,2) -> cos 1
    s = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]]])
    t = torch.tensor([[[[0.0, 2.0]], [[1.0, 2.0]]]])
    assert cosine(s, t).item() == pytest.approx(0.5)


def test_mse_gradient_reaches_student_only() -> None:
    s = torch.tensor([1.0, 3.0], requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    mse(s, t).backward()
    assert s.grad is not None and torch.allclose(s.grad, torch.tensor([1.0, 2.0]))  # 2 (s - t) / 2


def test_low_precision_features_are_compared_in_float32() -> None:
    s = torch.full((2, 3), 1.0 + 2**-7, dtype=torch.bfloat16)
    t = torch.ones(2, 3, dtype=torch.bfloat16)
    value = mse(s, t)
    assert value.dtype == torch.float32 and value.item() == pytest.approx(2**-14)


def test_logit_kd_matches_formula() -> None:
    s = torch.tensor([[1.0, 2.0, 0.0]])
    t = torch.tensor([[0.5, 0.5, 2.0]])
    temp = 2.0

    def softmax(v: list[float]) -> list[float]:
        e = [math.exp(x / temp) for x in v]
        return [x / sum(e) for x in e]

    p, q = softmax(t[0].tolist()), softmax(s[0].tolist())
    expected = temp**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert logit_kd(s, t, temp).item() == pytest.approx(expected, rel=1e-5)
    assert logit_kd(t, t, temp).item() == pytest.approx(0.0, abs=1e-6)


def test_weighted_sum_over_taps() -> None:
    feats_s = {"a": torch.full((2, 1, 2, 2), 1.0), "b": torch.full((2, 3), 2.0)}
    feats_t = {"a": torch.zeros(2, 1, 2, 2), "b": torch.zeros(2, 3)}
    loss = DistillationLoss(["a", "b"], "mse", weight=0.1, tap_weights={"b": 0.5})
    total, terms = loss(feats_s, feats_t)
    # mse a = 1, mse b = 4 -> 0.1 * (1 * 1 + 0.5 * 4) = 0.3
    assert total.item() == pytest.approx(0.3)
    assert terms["feat/a"].item() == pytest.approx(1.0) and terms["feat/b"].item() == pytest.approx(4.0)
    assert terms["feat"].item() == pytest.approx(0.3) and "kd" not in terms


def test_logit_term_is_added_when_weighted() -> None:
    feats = {"a": torch.zeros(1, 2)}
    s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    loss = DistillationLoss(["a"], "mse", weight=0.1, kd_weight=0.5, kd_temperature=3.0)
    total, terms = loss(feats, feats, s, t)
    assert total.item() == pytest.approx(0.5 * logit_kd(s, t, 3.0).item())
    assert terms["kd"].item() == pytest.approx(total.item())


def test_logit_only_without_taps() -> None:
    s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    total, _ = DistillationLoss([], "mse", weight=0.1, kd_weight=1.0, kd_temperature=4.0)(
        {}, {}, s.requires_grad_(), t
    )
    total.backward()
    assert total.item() == pytest.approx(logit_kd(s, t, 4.0).item()) and s.grad is not None


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="feature loss 'l1' is not known; valid: mse, nmse, cosine"):
        DistillationLoss(["a"], "l1")
    with pytest.raises(ValueError, match=r"tap_weights name taps that are not distilled: \['c'\]"):
        DistillationLoss(["a"], "mse", tap_weights={"c": 1.0})
    loss = DistillationLoss(["a"], "mse")
    with pytest.raises(ValueError, match="tap 'a': student features"):
        loss({"a": torch.zeros(1, 2)}, {"a": torch.zeros(1, 3)})


# --------------------------------------------------------------------------- the fused mse


def feature_pair(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(8, 16, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
    t = s + 0.1 * torch.randn(s.shape, generator=g)  # a teacher close to the student, as in training
    return s.to(dtype).requires_grad_(), t.to(dtype)


def test_fused_mse_equals_mse_in_float32_value_and_gradient() -> None:
    assert FUSED_FEATURE_LOSSES["mse"] is fused_mse
    s, t = feature_pair(torch.float32)
    ref, (ref_grad,) = mse(s, t), torch.autograd.grad(mse(s, t), s)
    fused = fused_mse(s, t)
    (grad,) = torch.autograd.grad(fused, s)
    assert fused.dtype == torch.float32 and fused.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(grad, ref_grad, rtol=1e-6, atol=1e-12)
    assert fused_mse(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(2.5)


def test_fused_mse_of_bf16_features_within_bf16_rounding_and_teacher_gets_nothing() -> None:
    s, t = feature_pair(torch.bfloat16)
    t.requires_grad_()  # even a teacher that asked for one gets no gradient
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = fused_mse(s, t)
    reference = mse(s, t)  # float32 copies of the bf16 features
    assert fused.dtype == torch.float32 and fused.item() == pytest.approx(reference.item(), rel=1e-2)
    fused.backward()
    (ref_grad,) = torch.autograd.grad(mse(s, t), s)
    assert s.grad is not None and s.grad.dtype == torch.bfloat16 and t.grad is None
    assert ((s.grad.float() - ref_grad.float()).norm() / ref_grad.float().norm()).item() < 1e-2


def test_distillation_loss_uses_the_fused_version_only_when_asked() -> None:
    assert DistillationLoss(["a"], "mse", fused=True).loss_fn is fused_mse
    assert DistillationLoss(["a"], "mse").loss_fn is mse
    assert DistillationLoss(["a"], "cosine", fused=True).loss_fn is cosine  # no fused version: the reference
    s, t = feature_pair(torch.float32)
    fused, _ = DistillationLoss(["a"], "mse", weight=0.3, fused=True)({"a": s}, {"a": t})
    plain, _ = DistillationLoss(["a"], "mse", weight=0.3)({"a": s}, {"a": t})
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)
