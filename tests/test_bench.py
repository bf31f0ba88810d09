"""Tests for ssd.bench (the throughput benchmark) and for the fast data path it defends.

The fast path (uint8 batches cropped/flipped on the device) must give exactly the images the
ordinary torchvision path would give for the same source images, so switching to it changes no
strategy's numbers.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms import ToTensor, v2
from torchvision.transforms.v2 import functional as TF

from ssd import bench
from ssd.data import InMemoryDataModule, random_crop_flip, to_unit_float
from ssd.paths import conf_dir
from tests.helpers import DATA_SETTINGS, TINY, compose_cfg, datamodule

# --------------------------------------------------------------------------- the benchmark


def test_bench_runs_end_to_end_and_writes_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    tiny = [
        "--batch-size",
        "8",
        "--image-size",
        "16",
        "--num-classes",
        "4",
        "--precision",
        "32-true",
        "--threads",
        "1",
    ]
    timing = [
        "--repeats",
        "2",
        "--min-repeats",
        "2",
        "--min-steps",
        "1",
        "--max-steps",
        "2",
        "--min-window-s",
        "0",
        "--data-noise-batches",
        "2",
    ]
    report = bench.main(
        [
            *tiny,
            *timing,
            "--channels-last",
            "false",
            "--strategies",
            "vanilla,self_distill",
            "--out",
            str(out),
        ]
    )

    written = json.loads(out.read_text())
    assert written["rows"] == json.loads(json.dumps(report["rows"]))
    assert written["resolved"] == {
        **written["resolved"],
        "device": "cpu",
        "precision": "32-true",
        "channels_last": False,
    }
    assert {"device", "torch", "lightning", "date"} <= set(written["machine"])
    rows = {r["name"]: r for r in written["rows"]}
    assert list(rows) == ["raw", "vanilla", "self_distill"]
    assert rows["self_distill"]["frozen"] == {"teacher": "vanilla"}
    for r in rows.values():
        assert r["error"] is None
        assert r["repeats"] == 2 and all(1 <= s <= 2 for s in r["steps"])
        assert r["images_per_s_min"] <= r["images_per_s"] <= r["images_per_s_max"]
        assert math.isclose(r["step_ms"], 1000 * 8 / r["images_per_s"])
        assert 0 < r["vs_raw"] < 100 and 0 < r["vs_vanilla"] < 100
        assert 0 < r["data_noise_share"] < 1
    assert rows["raw"]["vs_raw"] == 1.0 and rows["vanilla"]["vs_vanilla"] == 1.0
    targets = written["targets"]
    assert targets["vanilla_vs_raw"]["value"] == rows["vanilla"]["vs_raw"]
    assert targets["data_noise_share"]["value"] == rows["vanilla"]["data_noise_share"]
    student = targets["student_step_vs_vanilla"]["self_distill"]
    assert math.isclose(student["value"], 1 / rows["self_distill"]["vs_vanilla"])
    assert student["met"] == (student["value"] <= bench.TARGET_STUDENT_STEP)
    table = bench.format_table(written)
    assert "raw PyTorch loop" in table and "self_distill" in table and "targets:" in table


def test_every_strategy_config_is_benchmarked_vanilla_first() -> None:
    names = bench.discover_strategies()
    assert sorted(names) == sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml"))
    assert names[:2] == ["vanilla", "clean"]


def test_rows_are_strategies_or_named_variants_and_evaluation_only_configs_are_refused() -> None:
    """A named variant is its strategy with overrides; a config with no training step has nothing to time."""
    settings = bench.BenchSettings(batch_size=8, image_size=16, precision="32-true", channels_last="false")
    plain, none = bench.row_config("vanilla", settings, torch.device("cpu"))
    assert none == [] and plain["strategy"]["name"] == "vanilla" and bench.trains(plain)
    strategy, overrides = bench.ROW_VARIANTS["self_distill:reference"]
    cfg, variant = bench.row_config("self_distill:reference", settings, torch.device("cpu"))
    assert variant == overrides and cfg["strategy"]["name"] == strategy
    assert cfg["strategy"]["fold_teacher_bn"] is False and cfg["strategy"]["fused_feature_loss"] is False
    assert bench.frozen_stages(cfg) == {"teacher": "vanilla"}
    if (conf_dir() / "strategy" / "denoise_frozen.yaml").exists():
        with pytest.raises(ValueError, match="trains nothing"):
            bench.row_config("denoise_frozen", settings, torch.device("cpu"))


def test_student_step_target_covers_strategies_not_their_reference_variants() -> None:
    rows = [
        {"name": "vanilla", "frozen": {}, "variant": [], "images_per_s": 100.0, "vs_raw": 0.97},
        {
            "name": "self_distill",
            "frozen": {"teacher": "vanilla"},
            "variant": [],
            "images_per_s": 80.0,
            "vs_vanilla": 0.8,
        },
        {
            "name": "self_distill:reference",
            "frozen": {"teacher": "vanilla"},
            "variant": ["x=1"],
            "images_per_s": 70.0,
            "vs_vanilla": 0.7,
        },
    ]
    targets = bench.check_targets(rows)["student_step_vs_vanilla"]
    assert list(targets) == ["self_distill"] and targets["self_distill"]["value"] == pytest.approx(1.25)
    assert targets["self_distill"]["met"] is True


def test_step_window_times_whole_steps_after_warmup() -> None:
    syncs: list[int] = []
    window = bench.StepWindow(
        warmup=2, min_steps=2, max_steps=5, min_seconds=0.0, sync=lambda: syncs.append(1)
    )
    assert [window.step_end(8) for _ in range(4)] == [False, False, False, True]
    result = window.result()
    assert (result.steps, result.images, len(syncs)) == (2, 16, 2) and result.seconds > 0
    capped = bench.StepWindow(warmup=1, min_steps=1, max_steps=3, min_seconds=1e9, sync=lambda: None)
    assert [capped.step_end(8) for _ in range(4)] == [False, False, False, True]
    assert capped.result().steps == 3
    with pytest.raises(RuntimeError):
        bench.StepWindow(warmup=1, min_steps=1, max_steps=1, min_seconds=0, sync=lambda: None).result()


# --------------------------------------------------------------------------- in-memory path == torchvision path


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 NHWC images without zeros, so a zero-padded border is never ambiguous."""
    return np.random.default_rng(seed).integers(1, 256, size=(n, size, size, 3), dtype=np.uint8)


def _torchvision_views(img_chw: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every image torchvision's RandomCrop(size, padding) + RandomHorizontalFlip + ToTensor can give."""
    size = img_chw.shape[-1]
    padded = TF.pad(img_chw, [padding])  # zeros, as RandomCrop(padding=...) pads

    def to_tensor(chw: torch.Tensor) -> torch.Tensor:
        return ToTensor()(chw.permute(1, 2, 0).numpy())  # the classic CIFAR pipeline's float conversion

    views = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = TF.crop(padded, top, left, size, size)
            views += [to_tensor(crop), to_tensor(TF.horizontal_flip(crop))]
    return views


def test_to_unit_float_equals_torchvision_to_tensor() -> None:
    x = _images(8, 12)
    ours = to_unit_float(torch.from_numpy(x).permute(0, 3, 1, 2))
    v1 = torch.stack([ToTensor()(img) for img in x])
    v2_path = torch.stack(
        [v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])(img) for img in x]
    )
    assert torch.equal(ours, v1)
    assert torch.allclose(ours, v2_path, rtol=0, atol=1e-7)


def test_random_crop_flip_gives_torchvision_crops_and_flips() -> None:
    n, size, padding = 96, 10, 2
    x = torch.from_numpy(_images(n, size, seed=1)).permute(0, 3, 1, 2).contiguous()
    out = random_crop_flip(x, padding=padding, flip=True, generator=torch.Generator().manual_seed(3))
    chosen = []
    for i in range(n):
        hits = [k for k, view in enumerate(_torchvision_views(x[i], padding)) if torch.equal(out[i], view)]
        assert len(hits) == 1, f"sample {i} is not exactly one torchvision RandomCrop+flip of its image"
        chosen.append(hits[0])
    offsets = {k // 2 for k in chosen}
    flips = sum(k % 2 for k in chosen)
    assert len(offsets) > 15 and 0.25 * n < flips < 0.75 * n  # offsets and flips drawn per sample


@pytest.mark.parametrize("channels_last", [False, True])
def test_in_memory_datamodule_batches_equal_the_torchvision_path(channels_last: bool) -> None:
    size, padding = 12, 3
    arrays = {
        "x_train": _images(40, size, seed=2),
        "y_train": np.arange(40) % 4,
        "x_test": _images(12, size, seed=3),
        "y_test": np.arange(12) % 4,
    }
    settings = {**DATA_SETTINGS, "batch_size": 16, "val_size": 0, "channels_last": channels_last}
    dm = InMemoryDataModule(arrays=arrays, padding=padding, **settings)
    dm.setup("fit")
    x, y, idx = dm.device_batch(next(iter(dm.train_dataloader())), augment=True)
    assert x.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for i, j in enumerate(idx.tolist()):  # val_size=0: index j of the train split is image j of the arrays
        source = TF.to_image(arrays["x_train"][j])
        assert y[i] == arrays["y_train"][j]
        assert sum(torch.equal(x[i], view) for view in _torchvision_views(source, padding)) == 1
    xt, _, idx_t = dm.device_batch(next(iter(dm.test_dataloader())), augment=False)
    expected = torch.stack([ToTensor()(arrays["x_test"][j]) for j in idx_t.tolist()])
    assert torch.equal(xt, expected)


# --------------------------------------------------------------------------- other fast paths


def test_splits_are_copied_to_the_training_device_once_when_resident() -> None:
    def on(device: str) -> SimpleNamespace:
        return SimpleNamespace(
            world_size=1,
            global_rank=0,
            training=True,
            strategy=SimpleNamespace(root_device=torch.device(device)),
        )

    resident = datamodule("synthetic", train=32, test=8, batch_size=8, val_size=0, device_resident=True)
    resident.setup("fit")
    resident.trainer = on("meta")  # stands for a GPU: any device other than the split's
    first, second = resident.train_dataloader().dataset, resident.train_dataloader().dataset
    assert first.x.device.type == "meta" and first.x is second.x and first.y is second.y
    assert resident.test_dataloader().dataset.x.device.type == "meta"
    auto = datamodule("synthetic", train=32, test=8, batch_size=8, val_size=0)  # auto: CUDA devices only
    auto.setup("fit")
    auto.trainer = on("meta")
    assert auto.train_dataloader().dataset.x.device.type == "cpu"
    with pytest.raises(ValueError, match="device_resident"):
        datamodule("synthetic", device_resident="gpu")


@pytest.mark.slow
def test_compiled_networks_keep_their_feature_taps(tmp_path: Path) -> None:
    """trainer.compile=true: a student compiled after a teacher stage of the same class still records taps."""
    from ssd.data.protocol import DataFacts
    from ssd.fit import build_module
    from ssd.models import FeatureTaps

    cfg = OmegaConf.to_container(
        compose_cfg([*TINY, "trainer.compile=true", "trainer.channels_last=false"], tmp_path), resolve=True
    )
    info = DataFacts(4, 16, (0.5,) * 3, (0.25,) * 3)
    x = torch.rand(2, 3, 16, 16)
    build_module(cfg, info, {}).net(x)  # e.g. the teacher stage: compiled and run without hooks
    student = build_module(cfg, info, {}).net
    taps = FeatureTaps(student, ["stem", "layer3"])
    student(x)
    assert set(taps.pop()) == {"stem", "layer3"}


# --------------------------------------------------------------------------- whole runs


def test_whole_run_table_gives_medians_and_paired_ratios() -> None:
    from ssd.bench.wholerun import PHASES, format_whole_runs

    def run(wall: float, acc: float) -> dict:
        return {"wall_s": wall, "cpu_s": wall / 2, "test_acc": acc, "phases": dict.fromkeys(PHASES, wall / 5)}

    report = {
        "settings": {"sigma": 0.2, "epochs": 15, "variant": "subset", "threads": 2, "pairs": 2},
        "runs": {"plain": [run(100, 0.5), run(90, 0.5)], "ssd": [run(110, 0.52), run(99, 0.52)]},
        "ssd_vs_plain": {"wall_s": 1.1, "cpu_s": 1.1},
    }
    table = format_whole_runs(report)
    assert "2 interleaved pairs" in table and "ssd / plain: wall 1.100, CPU 1.100" in table
    assert " 95.0 " in table.splitlines()[2]  # the plain loop's median wall time


@pytest.mark.slow
def test_whole_runs_time_ssd_and_the_plain_loop_as_processes(tmp_path: Path) -> None:
    env = os.environ.get("SSD_DATA_DIR")
    data = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (data / "cifar10_subset.npz").is_file():
        pytest.skip(f"offline data not found at {data} (set SSD_DATA_DIR)")
    out = tmp_path / "whole.json"
    report = bench.main(
        ["--whole-run", "--pairs=1", "--epochs=1", "--threads=1", f"--data-root={data}", f"--out={out}"]
    )
    assert json.loads(out.read_text())["ssd_vs_plain"] == report["ssd_vs_plain"]
    for kind in ("plain", "ssd"):
        (r,) = report["runs"][kind]
        assert r["cpu_s"] > 0 and 0 <= r["test_acc"] <= 1
        assert sum(r["phases"].values()) == pytest.approx(r["wall_s"])  # the phases split the whole wall time
        assert r["phases"]["train_steps"] > 0 and r["phases"]["startup"] > 0
