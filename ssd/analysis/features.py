"""How good a distillation target is: features of noisy-input networks vs a clean teacher on clean images.

SSD's qualitative claim is that a teacher trained on noisy images, fed noisy images,
produces features about as useful as a clean teacher's features of the clean image. This
module makes that measurable, per tap, against the reference ``F_l(T_clean, x)``:

* **linear CKA** (Kornblith et al., 2019), estimated over minibatches with the unbiased
  HSIC (Nguyen, Raghu & Kornblith, 2021) so memory stays ``O(batch^2)`` for any number
  of images and any feature size. In [0, 1] up to estimator noise; 1 = the same
  representation up to rotation and scale. Comparable across different networks.
* **relative MSE** ``sum_i ||F_i - R_i||^2 / sum_i ||R_i||^2``: 0 = identical feature
  maps. Only meaningful where channels are aligned with the reference (a student
  distilled from that teacher, the teacher itself on other input); ``None`` when shapes differ.

Noisy inputs use the fixed per-sample evaluation noise (``ssd.noise.fixed_noisy``), so the
numbers are those of the test set every strategy is evaluated on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ssd.models import FeatureTaps
from ssd.noise import NoiseModel, fixed_noisy


def linear_gram(features: Tensor) -> Tensor:
    """``X X^T`` of the per-sample flattened features, in float64."""
    x = features.detach().flatten(1).float()
    return (x @ x.T).double()


def unbiased_hsic(k: Tensor, l: Tensor) -> Tensor:  # noqa: E741 - the usual name of the second Gram matrix
    """Unbiased HSIC estimator (Song et al., 2012) of two ``n x n`` Gram matrices, ``n >= 4``."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 samples, got {n}")
    k = k - torch.diag(torch.diagonal(k))
    l = l - torch.diag(torch.diagonal(l))  # noqa: E741
    ones = torch.ones(n, 1, dtype=k.dtype, device=k.device)
    trace = (k * l).sum()
    sums = (ones.T @ k @ ones) * (ones.T @ l @ ones) / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (ones.T @ k @ l @ ones)
    return ((trace + sums - cross) / (n * (n - 3))).reshape(())


@dataclass
class TapAgreement:
    """Running sums for one tap: minibatch HSIC terms (for CKA) and squared errors (for relative MSE)."""

    hsic_xy: float = 0.0
    hsic_xx: float = 0.0
    hsic_yy: float = 0.0
    batches: int = 0
    sq_error: float = 0.0
    sq_reference: float = 0.0
    shapes_match: bool = True
    images: int = 0

    def update(self, features: Tensor, reference: Tensor) -> None:
        """Add a batch of features of the compared network and of the reference (same samples)."""
        if features.shape[0] != reference.shape[0]:
            raise ValueError(f"batch sizes differ: {features.shape[0]} vs {reference.shape[0]}")
        self.images += int(features.shape[0])
        if features.shape[0] >= 4:
            k, l = linear_gram(features), linear_gram(reference)  # noqa: E741
            self.hsic_xy += float(unbiased_hsic(k, l))
            self.hsic_xx += float(unbiased_hsic(k, k))
            self.hsic_yy += float(unbiased_hsic(l, l))
            self.batches += 1
        if features.shape != reference.shape:
            self.shapes_match = False
        if self.shapes_match:
            f, r = features.detach().double(), reference.detach().double()
            self.sq_error += float((f - r).pow(2).sum())
            self.sq_reference += float(r.pow(2).sum())

    @property
    def cka(self) -> float | None:
        denom = (self.hsic_xx * self.hsic_yy) ** 0.5 if self.hsic_xx > 0 and self.hsic_yy > 0 else 0.0
        return self.hsic_xy / denom if self.batches and denom > 0 else None

    @property
    def rel_mse(self) -> float | None:
        return self.sq_error / self.sq_reference if self.shapes_match and self.sq_reference > 0 else None


@dataclass
class Comparison:
    """A network and which test images it sees (``clean`` or ``noisy``), measured per tap against the reference."""

    net: nn.Module
    inputs: str
    taps: dict[str, TapAgreement] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "input": self.inputs,
            "cka": {name: agg.cka for name, agg in self.taps.items()},
            "rel_mse": {name: agg.rel_mse for name, agg in self.taps.items()},
        }


def _features(net: nn.Module, taps: FeatureTaps, x: Tensor) -> dict[str, Tensor]:
    net(x)
    return taps.pop()


@torch.no_grad()
def feature_agreement(
    reference: nn.Module,
    compared: Mapping[str, tuple[nn.Module, str]],
    batches: Iterable[tuple[Tensor, Tensor]],
    noise: NoiseModel,
    eval_seed: int,
    taps: Sequence[str],
    device: torch.device | str = "cpu",
    max_images: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-tap CKA and relative MSE of each compared network against ``reference`` on clean images.

    Args:
        reference: the clean teacher; its features of clean images are the target.
        compared: name -> (network, ``"noisy"`` or ``"clean"``: the images it sees).
        batches: ``(x in [0,1], idx)`` test batches (``idx`` drives the fixed noise).
        taps: tap names every network has (in network order).
        max_images: stop after this many images (None: all).
    """
    for name, (_, inputs) in compared.items():
        if inputs not in ("clean", "noisy"):
            raise ValueError(f"comparison {name!r}: inputs must be 'clean' or 'noisy', got {inputs!r}")
    nets = {"reference": reference, **{name: net for name, (net, _) in compared.items()}}
    modes = {net: net.training for net in nets.values()}
    hooks = {name: FeatureTaps(net, list(taps)) for name, net in nets.items()}
    results = {
        name: Comparison(net, inputs, {t: TapAgreement() for t in taps})
        for name, (net, inputs) in compared.items()
    }
    seen = 0
    try:
        for net in nets.values():
            net.eval().to(device)
        for x, idx in batches:
            if max_images is not None:
                if seen >= max_images:
                    break
                x, idx = x[: max_images - seen], idx[: max_images - seen]
            seen += int(x.shape[0])
            x = x.to(device)
            views = {"clean": x, "noisy": fixed_noisy(noise, x, idx, eval_seed)}
            ref = _features(reference, hooks["reference"], views["clean"])
            for name, comparison in results.items():
                feats = _features(comparison.net, hooks[name], views[comparison.inputs])
                for tap, agg in comparison.taps.items():
                    agg.update(feats[tap], ref[tap])
    finally:
        for taps_ in hooks.values():
            taps_.remove()
        for net, training in modes.items():
            net.train(training)
    return {name: {**comparison.summary(), "images": seen} for name, comparison in results.items()}


def plot_agreement(summary: Mapping[str, Any], path: str, title: str = "") -> None:
    """Two panels (CKA, relative MSE) of every comparison across taps, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taps = list(summary["taps"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, comp in summary["comparisons"].items():
        who = (
            f"student ({summary['student_strategy']})"
            if name == "student" and summary.get("student_strategy")
            else name
        )
        label = f"{who.replace('_', ' ')}, {comp['input']} input"
        for ax, metric in zip(axes, ("cka", "rel_mse"), strict=True):
            values = [comp[metric].get(t) for t in taps]
            xs = [i for i, v in enumerate(values) if v is not None]
            if xs:
                ax.plot(xs, [values[i] for i in xs], marker="o", label=label)
    axes[0].set_ylabel("linear CKA (higher = closer)")
    axes[1].set_ylabel("relative MSE (lower = closer)")
    positive = [v for c in summary["comparisons"].values() for v in c["rel_mse"].values() if v is not None]
    if positive and min(positive) > 0:
        axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xticks(range(len(taps)), taps)
        ax.set_xlabel("tap")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
