"""The plain hand-written loop that ssd's vanilla is held against (``ssd.plainloop``, ``ssd.parity``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ssd.parity import _row, markdown
from ssd.plainloop import Recipe, batches, crop_flip, reset_to_torch_init, train_and_test
from tests.helpers import classifier


def test_batches_keep_pad_or_drop_the_last_partial_batch() -> None:
    g = torch.Generator().manual_seed(0)
    keep = batches(10, 4, "keep", g)
    assert [len(b) for b in keep] == [4, 4, 2] and sorted(torch.cat(keep).tolist()) == list(range(10))
    pad = batches(10, 4, "pad", torch.Generator().manual_seed(0))
    assert [len(b) for b in pad] == [4, 4, 4] and set(torch.cat(pad).tolist()) == set(range(10))
    assert [len(b) for b in batches(10, 4, "drop", torch.Generator().manual_seed(0))] == [4, 4]


def test_crop_flip_shifts_by_at_most_the_padding() -> None:
    x = torch.rand(16, 3, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(1), "constant")
    assert out.shape == x.shape
    # every output row is a (possibly flipped) shifted window: its nonzero values come from the image
    assert out.abs().sum() > 0 and out.max() <= x.max()
    reflected = crop_flip(x, torch.Generator().manual_seed(1), "reflect")
    assert (reflected > 0).all()  # reflect padding never shows zeros for a positive image


def test_reset_to_torch_init_changes_ssd_init() -> None:
    net = classifier("resnet20", 10, (0.5,) * 3, (0.25,) * 3)
    before = net.backbone.fc.weight.detach().clone()
    reset_to_torch_init(net)
    bound = 1 / np.sqrt(net.backbone.fc.in_features)
    assert not torch.equal(before, net.backbone.fc.weight)
    assert net.backbone.fc.weight.abs().max() <= bound  # PyTorch's uniform(-1/sqrt(fan_in), ...)


@pytest.mark.usefixtures("one_thread")
def test_plain_loop_trains_and_tests_on_tiny_arrays() -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
        "y_train": np.arange(40) % 10,
        "x_test": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
        "y_test": np.arange(20) % 10,
    }
    recipe = Recipe(epochs=1, batch_size=16, bf16=False)
    a = train_and_test(recipe, arrays, seed=0)
    b = train_and_test(recipe, arrays, seed=0)
    assert 0.0 <= a["test_acc"] <= 1.0 and a["steps"] == 3  # 16 + 16 + 8: the last batch kept
    assert a["test_acc"] == b["test_acc"] and a["clean_acc"] == b["clean_acc"]  # seeded


def test_parity_table_pairs_each_variant_with_the_plain_loop_by_seed() -> None:
    plain = [{"seed": s, "test_acc": v} for s, v in [(0, 0.50), (1, 0.52), (2, 0.54)]]
    ssd = [{"seed": s, "test_acc": v} for s, v in [(0, 0.51), (1, 0.53), (2, 0.55)]]
    baseline = {r["seed"]: r["test_acc"] for r in plain}
    row = _row("ssd", ssd, baseline)
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.53)
    diff = row["diff_vs_plain_pts"]
    assert diff["mean"] == pytest.approx(1.0) and diff["low"] == pytest.approx(1.0)  # constant paired diff
    text = markdown([_row("plain loop", plain, None), row], "test setting")
    assert "Setting: test setting" in text and "+1.00 [+1.00, +1.00]" in text


def test_distillation_gain_rows_pair_each_loop_with_its_own_vanilla() -> None:
    from ssd.parity import gain_rows

    results: dict = {}
    for s, (pv, sv) in enumerate([(0.50, 0.55), (0.52, 0.56), (0.51, 0.57)]):
        results[f"plain vanilla s{s}"] = {"test_acc": pv}
        results[f"plain clean s{s}"] = {"test_acc": 0.3}
        results[f"plain STL (random) s{s}"] = {"test_acc": pv + 0.02}
        teacher = {"teacher": {"test_acc": sv}}
        results[f"ssd STL (random) s{s}"] = {"test_acc": sv + 0.01, "stages": {"teacher": {"test_acc": 0.3}}}
        results[f"ssd SSD (random) s{s}"] = {"test_acc": sv - 0.01, "stages": teacher}
    rows = {r["row"]: r for r in gain_rows(results, [0, 1, 2], ["random"])}
    assert rows["plain STL (random)"]["gain"]["mean"] == pytest.approx(2.0)
    assert rows["ssd STL (random)"]["gain"]["mean"] == pytest.approx(1.0)  # against ssd's own vanilla
    assert rows["ssd SSD (random)"]["gain"]["mean"] == pytest.approx(-1.0)
    assert rows["ssd vanilla"]["mean"] == pytest.approx(0.56) and rows["ssd clean"]["gain"] is None
    assert list(rows)[:4] == ["plain vanilla", "ssd vanilla", "plain clean", "ssd clean"]


@pytest.mark.usefixtures("one_thread")
def test_plain_student_starts_from_its_teacher_when_asked() -> None:
    from ssd.plainloop import cifar10_classifier, train

    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
        "y_train": np.arange(32) % 10,
    }
    teacher = cifar10_classifier("resnet20")
    recipe = Recipe(epochs=1, batch_size=16, bf16=False, train_on="distill", lr=1e-12, weight_decay=0.0)
    own = train(recipe, arrays, seed=0, teacher=teacher)
    started = train(dataclasses.replace(recipe, from_teacher=True), arrays, seed=0, teacher=teacher)
    w = teacher.backbone.fc.weight
    assert torch.allclose(started.backbone.fc.weight, w) and not torch.allclose(own.backbone.fc.weight, w)
