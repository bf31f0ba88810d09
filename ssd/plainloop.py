"""A minimal hand-written training loop: the yardstick ssd's own training is held against.

No Lightning, no Hydra, no callbacks: one model, one optimizer, one ``for`` loop over
batches, as a reviewer would write it. ``python -m ssd.parity`` trains the same recipe here
and through ssd and compares final accuracy, and the distillation *gain* (STL − vanilla,
SSD − vanilla); ``ssd.bench`` times whole runs of it against whole ssd runs. Every recipe
detail where a plain loop and ssd could differ is a field of :class:`Recipe`, so each
difference can be switched on alone and measured.

The student step is the SPEC's, written out plainly: the frozen teacher (eval mode, no
gradients) sees the clean image (STL) or a noisy one (SSD), forward hooks record the stage
outputs of both networks, and the loss is ``CE + lambda * sum_l MSE(F_l(S), F_l(T))``.

Only the data arrays, the network definition and the fixed evaluation noise are shared with
ssd (they define *what* is compared, not *how* it is trained), so both loops are measured on
the same images with the same test protocol.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd import models
from ssd.data.cifar import load_cifar_arrays
from ssd.data.roots import resolve_data_root
from ssd.noise import GaussianNoise, fixed_noisy

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def cifar10_classifier(arch: str) -> models.Classifier:
    """A CIFAR-10 classifier of ``ssd.models.<arch>`` (``resnet20``, ...), normalising as the framework's."""
    return models.Classifier(getattr(models, arch)(10), CIFAR10_MEAN, CIFAR10_STD)


TAPS = ("stem", "layer1", "layer2", "layer3")


@dataclass(frozen=True)
class Recipe:
    """What one training run does. Defaults: the plain loop most people write."""

    arch: str = "resnet20"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0  # linear warm-up, then the schedule, stepped per batch
    schedule: str = "cosine"  # cosine (to 0) | multistep (x0.1 at 50% and 75%)
    init: str = "torch"  # torch: PyTorch's default layer init | ssd: ssd's He (fan_out) init
    pad_mode: str = "constant"  # random-crop padding: constant (zeros) | reflect
    last_batch: str = "keep"  # keep (a smaller last batch) | pad (wrap around to a full batch) | drop
    sigma: float = 0.2  # Gaussian training/test noise on [0,1] images
    bf16: bool = True  # bf16 autocast + channels_last (what ssd's precision=auto picks on this CPU)
    # what is trained: vanilla (noisy CE) | clean (clean CE) | distill (noisy CE + feature MSE to a teacher)
    train_on: str = "vanilla"
    lam: float = 0.1  # distill: weight of the summed per-tap MSE
    teacher_input: str = "clean"  # distill: clean (STL) | same (SSD: the student's noisy image) | independent
    from_teacher: bool = False  # distill: the student starts from the trained teacher's weights


def reset_to_torch_init(net: nn.Module) -> None:
    """PyTorch's own default initialisation of every layer (what a plain script gets)."""
    for m in net.modules():
        if m is not net and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def crop_flip(x: Tensor, g: torch.Generator, pad_mode: str) -> Tensor:
    """Per-image random 32x32 crop of the 4-padded image + random horizontal flip (float in [0,1])."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode=pad_mode)
    dy = torch.randint(0, 9, (n,), generator=g)
    dx = torch.randint(0, 9, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 8)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    flip = torch.rand(n, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def batches(n: int, batch_size: int, last_batch: str, g: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=g)
    if last_batch == "pad" and n % batch_size:
        order = torch.cat([order, order[: batch_size - n % batch_size]])
    chunks = list(order.split(batch_size))
    if last_batch == "drop" and len(chunks[-1]) < batch_size:
        chunks.pop()
    return chunks


def forward_with_taps(net: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Logits and the outputs of the stem and every residual stage, from one forward pass (hooks)."""
    feats: list[Tensor] = []
    hooks = [getattr(net.backbone, t).register_forward_hook(lambda m, i, o: feats.append(o)) for t in TAPS]
    try:
        return net(x), feats
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, sigma: float, eval_seed: int, bf16: bool) -> float:
    """Accuracy under ssd's fixed evaluation noise (noise of image i depends on (eval_seed, i) only)."""
    net.eval()
    noise = GaussianNoise(sigma, clip=False, sigma_max=None)
    correct = 0
    for idx in torch.arange(len(y)).split(512):
        xb = fixed_noisy(noise, x[idx].float().div(255), idx, eval_seed)
        if bf16:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            correct += int((net(xb).argmax(1) == y[idx]).sum())
    return correct / len(y)


def train(
    recipe: Recipe,
    arrays: dict[str, np.ndarray],
    seed: int,
    teacher: nn.Module | None = None,
    init_seed: int | None = None,
) -> nn.Module:
    """Train ``recipe`` from ``seed`` (data order, crops, noise; and the initial weights unless
    ``init_seed`` is given) on ``arrays`` (uint8 NHWC); ``teacher``: the frozen net a distill recipe matches."""
    if (recipe.train_on == "distill") != (teacher is not None):
        raise ValueError("a teacher is given exactly when recipe.train_on == 'distill'")
    torch.manual_seed(seed if init_seed is None else init_seed)
    g = torch.Generator().manual_seed(seed)
    x_train = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).contiguous()
    y_train = torch.from_numpy(arrays["y_train"]).long()
    net = cifar10_classifier(recipe.arch)
    if recipe.init == "torch":
        reset_to_torch_init(net)
    if recipe.bf16:
        net = net.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.eval().requires_grad_(False)
        if recipe.from_teacher:
            net.load_state_dict(teacher.state_dict())
    opt = torch.optim.SGD(
        net.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    per_epoch = len(batches(len(y_train), recipe.batch_size, recipe.last_batch, torch.Generator()))
    total, warmup = recipe.epochs * per_epoch, int(round(recipe.warmup_epochs * per_epoch))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if recipe.schedule == "multistep":
            return 0.1 ** sum(step >= f * total for f in (0.5, 0.75))
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    for _epoch in range(recipe.epochs):
        net.train()
        for idx in batches(len(y_train), recipe.batch_size, recipe.last_batch, g):
            x = crop_flip(x_train[idx].float().div(255), g, recipe.pad_mode)
            noisy = x if recipe.train_on == "clean" else x + recipe.sigma * torch.randn(x.shape, generator=g)
            if recipe.bf16:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
                if teacher is None:
                    loss = F.cross_entropy(net(noisy), y_train[idx])
                else:
                    seen = {"clean": x, "same": noisy}.get(recipe.teacher_input)
                    if seen is None:  # independent: a second noise draw of the same clean image
                        seen = x + recipe.sigma * torch.randn(x.shape, generator=g)
                    with torch.no_grad():
                        _, target = forward_with_taps(teacher, seen)
                    logits, feats = forward_with_taps(net, noisy)
                    feat = sum(F.mse_loss(s.float(), t.float()) for s, t in zip(feats, target, strict=True))
                    loss = F.cross_entropy(logits, y_train[idx]) + recipe.lam * feat
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net


def test(
    net: nn.Module, recipe: Recipe, arrays: dict[str, np.ndarray], eval_seed: int = 1234
) -> dict[str, float]:
    """Noisy (at ``recipe.sigma``) and clean test accuracy under ssd's fixed evaluation noise."""
    x_test = torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2).contiguous()
    y_test = torch.from_numpy(arrays["y_test"]).long()
    return {
        "test_acc": accuracy(net, x_test, y_test, recipe.sigma, eval_seed, recipe.bf16),
        "clean_acc": accuracy(net, x_test, y_test, 0.0, eval_seed, recipe.bf16),
    }


def train_and_test(
    recipe: Recipe,
    arrays: dict[str, np.ndarray],
    seed: int,
    eval_seed: int = 1234,
    teacher: nn.Module | None = None,
    init_seed: int | None = None,
) -> dict[str, Any]:
    """Train ``recipe`` from ``seed`` and test it; returns accuracies, times and (key ``net``) the network."""
    start = time.perf_counter()
    net = train(recipe, arrays, seed, teacher, init_seed)
    train_s = time.perf_counter() - start
    per_epoch = len(batches(len(arrays["y_train"]), recipe.batch_size, recipe.last_batch, torch.Generator()))
    return {
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        **test(net, recipe, arrays, eval_seed),
        "train_seconds": train_s,
        "wall_seconds": time.perf_counter() - start,
        "steps": recipe.epochs * per_epoch,
        "net": net,
    }


def load_arrays(root: str | None, variant: str, limit_train: int | None = None) -> dict[str, np.ndarray]:
    """CIFAR-10 arrays exactly as ssd's datamodule finds them (``data.root``/``SSD_DATA_DIR``, ``variant``,
    the first ``limit_train`` training images)."""
    arrays, _source = load_cifar_arrays("cifar10", resolve_data_root(root), variant=variant)
    if limit_train is not None:
        arrays = {
            **arrays,
            "x_train": arrays["x_train"][:limit_train],
            "y_train": arrays["y_train"][:limit_train],
        }
    return arrays
