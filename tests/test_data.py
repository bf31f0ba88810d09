"""Tests for ssd.data: augmentation, sharding, datamodules, where data is found."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from ssd.config import ConfigError
from ssd.config.signatures import check_section, schema_of
from ssd.data import (
    CIFARDataModule,
    FolderDataModule,
    InMemoryDataModule,
    NoisyDataModule,
    ShardedDataModule,
    ShardedSampler,
    SyntheticDataModule,
    load_cifar_arrays,
    random_crop_flip,
    resolve_data_root,
    scan_image_folder,
    to_unit_float,
)
from ssd.data.memory import BatchTensorDataset
from ssd.data.splits import carve_validation
from ssd.validate import resolve_auto
from tests.helpers import DATA_SETTINGS, compose_cfg, datamodule

REPO = Path(__file__).resolve().parents[1]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fake_trainer(world_size: int = 1, global_rank: int = 0, training: bool = False) -> SimpleNamespace:
    return SimpleNamespace(world_size=world_size, global_rank=global_rank, training=training)


def arrays(n_train: int = 40, n_test: int = 10, size: int = 32, classes: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, size, size, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % classes).astype(np.int64),
        "x_test": rng.integers(0, 256, size=(n_test, size, size, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % classes).astype(np.int64),
    }


def write_mosaic_folder(folder: Path, a: dict, train_parts: int = 2) -> None:
    """The offline format of shared/data: 100 tiles per row, row-major, lossless WebP.

    Only the last file of a split may end in a partial (zero-padded) row.
    """
    folder.mkdir(parents=True)

    def save(x: np.ndarray, path: Path) -> None:
        rows = -(-len(x) // 100)
        pad = np.zeros((rows * 100 - len(x), 32, 32, 3), np.uint8)
        tiles = np.concatenate([x, pad]).reshape(rows, 100, 32, 32, 3).transpose(0, 2, 1, 3, 4)
        Image.fromarray(tiles.reshape(rows * 32, 3200, 3)).save(path, lossless=True)

    for i, part in enumerate(np.array_split(a["x_train"], train_parts), start=1):
        save(part, folder / f"train_{i}.webp")
    save(a["x_test"], folder / "test.webp")
    np.savez(folder / "labels.npz", y_train=a["y_train"], y_test=a["y_test"])


# --------------------------------------------------------------------------- augment


def test_to_unit_float_range_and_type() -> None:
    x = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    out = to_unit_float(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out, torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]))
    with pytest.raises(TypeError):
        to_unit_float(out)


def test_random_crop_flip_shapes_range_determinism() -> None:
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen(1))
    a = random_crop_flip(x, generator=gen(5))
    assert a.shape == x.shape and a.dtype == torch.float32 and a.is_contiguous()
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, random_crop_flip(x, generator=gen(5)))
    assert not torch.equal(a, random_crop_flip(x, generator=gen(6)))


def test_random_crop_really_shifts_per_sample() -> None:
    n, p = 64, 4
    x = torch.randint(1, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen(0))  # no zeros inside
    out = (random_crop_flip(x, padding=p, flip=False, generator=gen(1)) * 255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(n):
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert len(hits) == 1, "each output must be exactly one zero-padded crop of its own input"
        offsets.add(hits[0])
    assert len(offsets) > 10, "offsets must differ between samples"
    assert offsets != {(p, p)}


@pytest.mark.parametrize("flip", [False, True])
def test_reflect_padding_crops_from_the_mirrored_image(flip: bool) -> None:
    """pad_mode=reflect: every output is one crop of torch's reflect-padded image (flipped or not)."""
    n, p = 64, 4
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen(0))
    out = random_crop_flip(x, padding=p, flip=flip, generator=gen(1), pad_mode="reflect")
    padded = torch.nn.functional.pad(x.float(), (p, p, p, p), mode="reflect") / 255
    offsets = set()
    for i in range(n):
        crops = [
            (dy, dx, f)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            for f in ((False, True) if flip else (False,))
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8].flip(-1 if f else []))
        ]
        assert crops, "each output must be a crop of its own reflect-padded input"
        offsets.add(crops[0][:2])
    assert len(offsets) > 10


def test_unknown_pad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="pad_mode='edge'.*zeros, reflect"):
        random_crop_flip(torch.zeros((1, 3, 8, 8), dtype=torch.uint8), pad_mode="edge")


def test_random_flip_really_flips_per_sample() -> None:
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=gen(0))
    out = (random_crop_flip(x, padding=0, flip=True, generator=gen(2)) * 255).round().to(torch.uint8)
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    assert all(s or f for s, f in zip(same, flipped, strict=True))
    assert 10 < sum(flipped) < 54


def test_random_crop_flip_is_vectorised() -> None:
    """On the meta device any per-sample Python logic on values (``int(offset)``) would fail."""
    x = torch.empty((8, 3, 32, 32), dtype=torch.uint8, device="meta")
    out = random_crop_flip(x)
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32 and out.device.type == "meta"


# --------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_eval_shards_cover_each_index_exactly_once(replicas: int) -> None:
    n = 10
    shards = [list(ShardedSampler(n, replicas, r, shuffle=False, pad=False)) for r in range(replicas)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert shards[0][:2] == [0, replicas][: len(shards[0][:2])]
    for r, s in enumerate(shards):
        assert len(ShardedSampler(n, replicas, r, shuffle=False, pad=False)) == len(s)


def test_train_shards_equal_length_differ_and_reshuffle() -> None:
    n, replicas = 10, 3
    samplers = [ShardedSampler(n, replicas, r, shuffle=True, seed=7) for r in range(replicas)]
    shards = [list(s) for s in samplers]
    assert {len(s) for s in shards} == {4} and all(len(s) == 4 for s in samplers)
    assert set().union(*map(set, shards)) == set(range(n))
    assert shards[0] != shards[1]
    again = [list(ShardedSampler(n, replicas, r, shuffle=True, seed=7)) for r in range(replicas)]
    assert again == shards  # same seed, same epoch: same order on every run
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != shards
    dropped = [
        list(ShardedSampler(n, replicas, r, shuffle=True, seed=7, drop_last=True)) for r in range(replicas)
    ]
    assert {len(s) for s in dropped} == {3} and len(set().union(*map(set, dropped))) == 9


def test_sampler_is_left_alone_by_lightning() -> None:
    # Lightning re-wraps any sampler that is not a DistributedSampler when it injects one.
    assert isinstance(ShardedSampler(5), DistributedSampler)
    assert list(ShardedSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        ShardedSampler(5, num_replicas=2, rank=2)


# --------------------------------------------------------------------------- in-memory datamodules


def test_batched_dataset_uses_one_fancy_index() -> None:
    x = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).reshape(5, 3, 2, 2)
    ds = BatchTensorDataset(x, torch.arange(5))
    bx, by, bidx = ds.__getitems__([4, 1])
    assert torch.equal(bx, x[[4, 1]]) and by.tolist() == [4, 1] and bidx.dtype == torch.int64


def test_cifar_datamodule_on_tiny_npz(tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSD_DATA_DIR", raising=False)
    dm = datamodule("cifar10", root=tiny_npz.parent, batch_size=8, eval_batch_size=16, val_size=0.2)
    assert (dm.num_classes, dm.image_size) == (10, 32) and len(dm.mean) == len(dm.std) == 3
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 48, "val": 12, "test": 20}
    assert "cifar10.npz" in dm.source
    dm.trainer = fake_trainer(training=False)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x8, y, idx = next(iter(loader))
        assert x8.dtype == torch.uint8 and x8.shape[1:] == (3, 32, 32)
        x, y2, idx2 = dm.on_after_batch_transfer((x8, y, idx), 0)
        assert x.dtype == torch.float32 and x.shape == x8.shape and x.min() >= 0 and x.max() <= 1
        assert y2.dtype == idx2.dtype == torch.int64
    # eval batches are the plain images of the split, addressed by idx
    x8, y, idx = next(iter(dm.test_dataloader()))
    x, _, _ = dm.on_after_batch_transfer((x8, y, idx), 0)
    assert torch.equal(x, to_unit_float(dm.split("test")[0][idx])) and idx.tolist() == list(range(16))
    # training batches are augmented, reproducibly for a seed
    dm.trainer = fake_trainer(training=True)
    x8, y, idx = next(iter(dm.train_dataloader()))
    aug, _, _ = dm.on_after_batch_transfer((x8, y, idx), 0)
    assert aug.shape == (8, 3, 32, 32) and not torch.equal(aug, to_unit_float(x8))


def test_split_is_deterministic_and_seeded(tiny_npz: Path) -> None:
    def val_x(split_seed: int) -> torch.Tensor:
        dm = datamodule("cifar10", root=tiny_npz.parent, val_size=10, split_seed=split_seed)
        dm.setup("fit")
        return dm.split("val")[0]

    assert torch.equal(val_x(0), val_x(0))
    assert not torch.equal(val_x(0), val_x(1))
    tr, va = carve_validation(100, 0.25, 3)
    assert len(va) == 25 and sorted(set(tr.tolist()) | set(va.tolist())) == list(range(100))
    with pytest.raises(ValueError, match="val_size"):
        carve_validation(10, 10, 0)


def test_no_validation_and_limits(tiny_npz: Path) -> None:
    dm = datamodule("cifar10", root=tiny_npz.parent, val_size=0, limit_train=30, limit_test=7, batch_size=8)
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 30, "val": 0, "test": 7}
    assert dm.val_dataloader() == []


def test_global_batch_size_is_split_over_devices(tiny_npz: Path) -> None:
    dm = datamodule("cifar10", root=tiny_npz.parent, batch_size=8, eval_batch_size=7, val_size=0)
    dm.setup("fit")
    dm.trainer = fake_trainer(world_size=2, global_rank=1)
    assert dm.train_dataloader().batch_size == 4
    test_idx = list(dm.test_dataloader().sampler)
    dm.trainer = fake_trainer(world_size=2, global_rank=0)
    assert sorted(test_idx + list(dm.test_dataloader().sampler)) == list(range(20))
    dm.trainer = fake_trainer(world_size=3)
    with pytest.raises(ValueError, match="GLOBAL batch size"):
        dm.train_dataloader()


def test_channels_last_option() -> None:
    dm = datamodule("synthetic", train=32, test=8, channels_last=True, batch_size=8)
    dm.setup("fit")
    x, _, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_in_memory_from_arrays_computes_stats() -> None:
    a = arrays(size=8, classes=3)
    dm = InMemoryDataModule(a, **{**DATA_SETTINGS, "batch_size": 4})
    assert dm.num_classes == 3 and dm.image_size == 8
    expected = a["x_train"].reshape(-1, 3).mean(0) / 255
    assert np.allclose(dm.mean, expected) and np.allclose(dm.std, (a["x_train"].reshape(-1, 3) / 255).std(0))


def test_synthetic_is_learnable_and_reproducible() -> None:
    dm = datamodule("synthetic", num_classes=4, image_size=16, train=256, test=128, val_size=0.1)
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 230, "val": 26, "test": 128} and dm.num_classes == 4
    x, y = dm.split("train")
    assert x.shape == (230, 3, 16, 16) and x.dtype == torch.uint8 and set(y.tolist()) == {0, 1, 2, 3}
    # learnable: even nearest-mean-colour is far above chance (25%)
    centroids = torch.stack([x[y == c].float().mean((0, 2, 3)) for c in range(4)])
    xt, yt = dm.split("test")
    pred = torch.cdist(xt.float().mean((2, 3)), centroids).argmin(1)
    assert (pred == yt).float().mean() > 0.8
    other = datamodule("synthetic", seed=5)
    other.setup("fit")
    assert torch.equal(other.split("test")[0], xt)  # seed drives order/augmentation, not the images


class TinyNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
        )
        self.correct = self.total = 0

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y, idx = batch
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and idx.dtype == torch.int64
        return nn.functional.cross_entropy(self.net(x), y)

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        x, y, _ = batch
        self.correct += int((self.net(x).argmax(1) == y).sum())
        self.total += len(y)

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        raise AssertionError("val_size=0 must mean no validation batches")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.03)


def test_synthetic_end_to_end_with_lightning(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dm = datamodule("synthetic", batch_size=32, val_size=0)
    model = TinyNet()
    trainer = L.Trainer(
        max_epochs=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert model.total == 128 and model.correct / model.total > 0.5


# --------------------------------------------------------------------------- sources


def test_resolve_data_root_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSD_DATA_DIR", str(tmp_path))
    assert resolve_data_root("/somewhere/else") == tmp_path
    monkeypatch.delenv("SSD_DATA_DIR")
    assert resolve_data_root("/somewhere/else") == Path("/somewhere/else")
    with pytest.raises(ValueError, match="SSD_DATA_DIR"):
        resolve_data_root(None)


def test_lookup_order_and_decode_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    full, subset = arrays(n_train=200, n_test=30, seed=1), arrays(n_train=20, n_test=5, seed=2)
    write_mosaic_folder(root / "cifar10", full)
    np.savez(root / "cifar10_subset.npz", **subset)
    np.savez(root / "cifar10.npz", **arrays(n_train=12, n_test=4, seed=3))
    (root / "cifar-10-batches-py").mkdir()  # broken torchvision files: skipped with the reason logged
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"junk")

    def load(variant: str = "auto") -> tuple[dict, str]:
        return load_cifar_arrays("cifar10", root, variant=variant, cache_dir=cache)

    with caplog.at_level(logging.INFO, logger="ssd.data"):
        a, src = load()
    assert "cifar10.npz" in src and len(a["y_train"]) == 12
    assert "skipping torchvision files" in caplog.text
    os.remove(root / "cifar10.npz")
    a, src = load()
    assert "mosaic folder" in src and np.array_equal(a["x_train"], full["x_train"])
    assert np.array_equal(a["x_test"], full["x_test"]) and a["y_test"].dtype == np.int64
    assert (cache / "cifar10.npz").is_file() and not list(cache.glob("*.tmp"))
    a, src = load()
    assert "decoded cache" in src and np.array_equal(a["x_train"], full["x_train"])
    a, src = load("subset")
    assert "cifar10_subset.npz" in src and np.array_equal(a["x_train"], subset["x_train"])
    os.remove(cache / "cifar10.npz")
    (root / "cifar10" / "labels.npz").unlink()
    a, src = load("auto")
    assert "cifar10_subset.npz" in src  # auto falls back to the subset last
    with pytest.raises(FileNotFoundError):
        load("full")


def test_missing_data_error_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSD_DATA_DIR", str(tmp_path))
    dm = datamodule("cifar10", root="/not/used", download=False)
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    msg = str(err.value)
    for needle in ("data.root", str(tmp_path), "SSD_DATA_DIR", "data.download=true", "cifar10_subset.npz"):
        assert needle in msg


def test_bad_array_file_is_a_clear_error(tmp_path: Path) -> None:
    a = arrays()
    a["x_train"] = a["x_train"].astype(np.float32)
    np.savez(tmp_path / "cifar10.npz", **a)
    with pytest.raises(ValueError, match=r"cifar10.npz.*x_train.*uint8"):
        load_cifar_arrays("cifar10", tmp_path)
    a = arrays()
    a["y_test"][0] = 10
    np.savez(tmp_path / "cifar10.npz", **a)
    with pytest.raises(ValueError, match="labels"):
        load_cifar_arrays("cifar10", tmp_path)
    (tmp_path / "cifar10.npz").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cifar10.npz: unreadable array file"):
        load_cifar_arrays("cifar10", tmp_path)


def test_download_is_used_only_when_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append(download)
            n = 10 if train else 4
            self.data = np.zeros((n, 32, 32, 3), np.uint8)
            self.targets = list(range(n))

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    a, src = load_cifar_arrays("cifar10", tmp_path, download=True)
    assert "download" in src and len(a["y_train"]) == 10 and True in calls

    class FullCIFAR10:  # two official training batches are enough to check the cut
        def __init__(self, root: str, train: bool, download: bool) -> None:
            n = 20_000 if train else 10_000
            self.data = np.zeros((n, 32, 32, 3), np.uint8)
            self.targets = [i % 10 for i in range(n)]

    # variant=subset with internet: the download, cut as the offline subset is (first 1017 of each batch)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FullCIFAR10)
    a, src = load_cifar_arrays("cifar10", tmp_path / "sub", download=True, variant="subset")
    assert "first 1017 of each batch" in src and len(a["y_train"]) == 2 * 1017 and len(a["y_test"]) == 1017

    class OfflineCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            raise OSError("no internet")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(FileNotFoundError, match=r"(?s)SSD_DATA_DIR.*download failed.*no internet"):
        load_cifar_arrays("cifar10", tmp_path / "empty", download=True)


# --------------------------------------------------------------------------- image folders


def make_tree(root: Path, classes: tuple[str, ...] = ("a", "b", "c"), per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.png")
    return root


def test_folder_datamodule_batches(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    dm = datamodule(
        "imagefolder", root=root, image_size=32, batch_size=4, eval_batch_size=6, val_size=0.25, num_workers=0
    )
    assert dm.num_classes == 3 and dm.mean == (0.485, 0.456, 0.406)
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 9, "val": 3, "test": 12}
    for loader, n in ((dm.train_dataloader(), 4), (dm.val_dataloader(), 3), (dm.test_dataloader(), 6)):
        x, y, idx = dm.on_after_batch_transfer(next(iter(loader)), 0)
        assert x.shape == (n, 3, 32, 32) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
        assert y.dtype == idx.dtype == torch.int64
    _, y, idx = next(iter(dm.test_dataloader()))
    assert idx.tolist() == list(range(6)) and y.tolist() == [0, 0, 0, 0, 1, 1]


def test_scan_image_folder_errors(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", per_class=1)
    classes, samples = scan_image_folder(root)
    assert classes == ["a", "b", "c"] and len(samples["train"]) == len(samples["val"]) == 3
    (root / "train" / "d").mkdir()
    with pytest.raises(ValueError, match=r"train.*no images.*d"):
        scan_image_folder(root)
    (root / "train" / "d" / "0.png").write_bytes((root / "train" / "a" / "0.png").read_bytes())
    with pytest.raises(ValueError, match=r"val.*missing here \['d'\]"):
        scan_image_folder(root)
    with pytest.raises(ValueError, match="split missing"):
        scan_image_folder(tmp_path / "nowhere")


# --------------------------------------------------------------------------- real offline data


def shared_data() -> Path:
    env = os.environ.get("SSD_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "cifar10_subset.npz").is_file():
        pytest.skip(f"offline data not found at {path} (set SSD_DATA_DIR)")
    return path


def test_real_cifar10_subset() -> None:
    a, src = load_cifar_arrays("cifar10", shared_data(), variant="subset")
    assert a["x_train"].shape == (5085, 32, 32, 3) and a["x_test"].shape == (1017, 32, 32, 3)
    assert set(np.unique(a["y_train"]).tolist()) == set(range(10)) and "subset" in src


def test_real_cifar100_subset_mosaic(tmp_path: Path) -> None:
    root = shared_data()
    if not (root / "cifar100_subset").is_dir():
        pytest.skip("cifar100_subset/ not present")
    a, src = load_cifar_arrays("cifar100", root, cache_dir=tmp_path)
    assert a["x_train"].shape == (10000, 32, 32, 3) and a["x_test"].shape == (2000, 32, 32, 3)
    assert np.bincount(a["y_train"]).tolist() == [100] * 100 and "mosaic" in src


@pytest.mark.slow
def test_real_cifar10_full_mosaic_matches_subset() -> None:
    root = shared_data()
    if not (root / "cifar10" / "labels.npz").is_file():
        pytest.skip("full cifar10/ mosaics not present")
    full, src = load_cifar_arrays("cifar10", root, variant="full")
    sub, _ = load_cifar_arrays("cifar10", root, variant="subset")
    assert full["x_train"].shape == (50000, 32, 32, 3) and full["x_test"].shape == (10000, 32, 32, 3)
    assert np.bincount(full["y_train"]).tolist() == [5000] * 10 and "mosaic" in src
    assert np.array_equal(full["x_test"][:1017], sub["x_test"])
    assert np.array_equal(full["y_test"][:1017], sub["y_test"])
    first = np.concatenate([full["x_train"][b * 10000 : b * 10000 + 1017] for b in range(5)])
    assert np.array_equal(first, sub["x_train"])


def test_real_imagenette_mini_scan() -> None:
    root = shared_data() / "imagenette_mini"
    if not root.is_dir():
        pytest.skip("imagenette_mini/ not present")
    dm = datamodule("imagefolder", root=root, image_size=64, batch_size=4, num_workers=0, val_size=0.1)
    assert dm.num_classes == 10 and dm.split_sizes() == {"train": 540, "val": 60, "test": 250}


def test_augmentation_stream_is_a_function_of_seed_rank_and_epoch() -> None:
    """A run resumed at epoch k augments exactly as an uninterrupted one (nothing to checkpoint)."""

    def first_batch_of_epoch(epoch: int, warmup_epochs: int = 0, rank: int = 0) -> torch.Tensor:
        dm = datamodule("synthetic", train=64, test=8, batch_size=16, val_size=0)
        dm.setup("fit")
        batch = next(iter(dm.test_dataloader()))
        trainer = SimpleNamespace(world_size=2, global_rank=rank, training=True, current_epoch=0)
        dm.trainer = trainer
        for e in range(warmup_epochs):  # epochs that an uninterrupted run went through
            trainer.current_epoch = e
            dm.on_after_batch_transfer(batch, 0)
            dm.on_after_batch_transfer(batch, 0)
        trainer.current_epoch = epoch
        return dm.on_after_batch_transfer(batch, 0)[0]

    uninterrupted = first_batch_of_epoch(2, warmup_epochs=2)
    assert torch.equal(first_batch_of_epoch(2), uninterrupted)
    assert not torch.equal(first_batch_of_epoch(1), uninterrupted)
    assert not torch.equal(first_batch_of_epoch(2, rank=1), uninterrupted)


# --------------------------------------------------------------------------- the datamodule interface


def every_family(tmp_path: Path, tiny_npz: Path) -> list[ShardedDataModule]:
    tree = make_tree(tmp_path / "tree")
    return [
        InMemoryDataModule(arrays(size=8, classes=3), **{**DATA_SETTINGS, "batch_size": 4}),
        datamodule("cifar10", root=tiny_npz.parent, batch_size=8),
        datamodule("synthetic", train=32, test=8, batch_size=8),
        datamodule("imagefolder", root=tree, image_size=16, batch_size=4, num_workers=0, val_size=0.25),
    ]


def test_every_datamodule_meets_the_protocol(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSD_DATA_DIR", raising=False)
    assert not isinstance(object(), NoisyDataModule)
    for dm in every_family(tmp_path, tiny_npz):
        name = type(dm).__name__
        dm.setup("fit")
        assert isinstance(dm, NoisyDataModule), name
        sizes = dm.split_sizes()  # a method everywhere
        assert set(sizes) == {"train", "val", "test"} and min(sizes["train"], sizes["test"]) > 0, name
        assert len(dm.fingerprint()) == 20 and dm.fingerprint() == dm.fingerprint(), name
        assert len(dm.mean) == len(dm.std) == 3 and dm.num_classes >= 3 and dm.source, name
        x, y, idx = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
        assert x.dtype == torch.float32 and x.shape[1:] == (3, dm.image_size, dm.image_size), name
        assert x.min() >= 0 and x.max() <= 1 and y.dtype == idx.dtype == torch.int64, name


def test_setting_seed_gives_each_stage_its_own_streams(tmp_path: Path) -> None:
    """The pipeline sets ``datamodule.seed`` before each stage's fit: order and augmentation follow it."""
    synthetic = datamodule("synthetic", train=64, test=8, batch_size=8, val_size=0)
    folder = datamodule(
        "imagefolder", root=make_tree(tmp_path / "tree"), image_size=16, batch_size=2, num_workers=0
    )
    for dm in (synthetic, folder):
        dm.setup("fit")

        def order(seed: int, dm: ShardedDataModule = dm) -> list[int]:
            dm.seed = seed
            return list(dm.train_dataloader().sampler)

        assert order(1) == order(1) and order(1) != order(2), type(dm).__name__

    def worker_seed(seed: int) -> int:  # folder: the DataLoader workers' augmentation seeds follow it too
        folder.seed = seed
        return folder.train_dataloader().generator.initial_seed()

    assert worker_seed(1) == worker_seed(1) != worker_seed(2)
    synthetic.trainer = fake_trainer(training=True)
    batch = next(iter(synthetic.test_dataloader()))

    def augmented(seed: int) -> torch.Tensor:
        synthetic.seed = seed
        synthetic.train_dataloader()  # a new fit starts its augmentation streams afresh
        return synthetic.on_after_batch_transfer(batch, 0)[0]

    assert torch.equal(augmented(1), augmented(1)) and not torch.equal(augmented(1), augmented(2))


def test_folder_fingerprint_follows_names_and_labels_not_location(tmp_path: Path) -> None:
    def fingerprint(root: Path, **kw: object) -> str:
        settings = {"image_size": 16, "batch_size": 2, "num_workers": 0, "val_size": 0.25, **kw}
        return datamodule("imagefolder", root=root, **settings).fingerprint()

    here = fingerprint(make_tree(tmp_path / "here"))
    assert fingerprint(make_tree(tmp_path / "elsewhere")) == here  # the same tree in another place
    assert fingerprint(tmp_path / "here", limit_test=3) == here  # the test images are not trained on
    assert fingerprint(tmp_path / "here", split_seed=1) != here  # other images held out for validation
    moved = make_tree(tmp_path / "relabelled")
    (moved / "train" / "a" / "0.png").rename(moved / "train" / "b" / "0x.png")
    assert fingerprint(moved) != here
    renamed = make_tree(tmp_path / "renamed")
    (renamed / "train" / "c" / "3.png").rename(renamed / "train" / "c" / "9.png")
    assert fingerprint(renamed) != here


def test_shared_settings_are_declared_once_and_listed_by_every_family() -> None:
    """A family passes the shared settings on with ``**settings``; the config check follows them up the chain."""
    shared = set(schema_of(ShardedDataModule).params)
    assert {"batch_size", "val_size", "seed", "limit_train", "limit_test"} <= shared
    for cls in (InMemoryDataModule, CIFARDataModule, SyntheticDataModule, FolderDataModule):
        schema = schema_of(cls)  # what the config check reads
        assert shared <= set(schema.params) and not schema.open, cls.__name__
    assert all(schema_of(SyntheticDataModule).params[k].required for k in shared)  # defaults: in the YAML
    assert {"padding", "flip", "device_resident"} <= set(schema_of(CIFARDataModule).params)
    assert "num_classes" not in schema_of(CIFARDataModule).params  # fixed by the family
    assert "padding" not in schema_of(FolderDataModule).params  # in-memory only
    with pytest.raises(TypeError, match="paddding"):
        datamodule("synthetic", paddding=3)
    with pytest.raises(ConfigError, match=r"data.paddding=3 is not allowed: .*did you mean data.padding"):
        check_section("data", {"_target_": "ssd.data.SyntheticDataModule", "paddding": 3})
    with pytest.raises(
        ConfigError, match=r"data.padding=4 is not allowed: data \(ssd.data.FolderDataModule\) has no key"
    ):
        check_section("data", {"_target_": "ssd.data.FolderDataModule", "root": "/not/read", "padding": 4})


@pytest.mark.parametrize("data", ["synthetic", "cifar10", "cifar100", "imagefolder"])
def test_every_data_config_composes_and_builds(data: str, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = compose_cfg([f"data={data}", "data.limit_train=40", "data.limit_test=8"], tmp_path)
    check_section("data", resolve_auto(cfg)["data"])
    dm = instantiate(cfg.data)  # nothing is read until the data is needed
    assert isinstance(dm, ShardedDataModule) and dm.batch_size == cfg.data.batch_size
    assert (dm.seed, dm.limit_train, dm.limit_test) == (cfg.seed, 40, 8)
    if data == "synthetic":
        dm.setup("fit")
        assert sum(dm.split_sizes().values()) == 48


def test_data_modules_are_small_and_share_no_private_names() -> None:
    for path in sorted((REPO / "ssd").rglob("*.py")):
        text = path.read_text()
        if path.parent.name == "data":
            assert len(text.splitlines()) <= 400, f"{path.name} has grown past 400 lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssd.data"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(REPO)} imports {private} from {node.module}"


def test_the_downloaded_subset_is_the_offline_subsets_definition() -> None:
    """variant=subset after a download: the first 1017 images of each official batch (cifar10_subset.npz)."""
    from ssd.data.cifar import official_subset

    full = {
        "x_train": np.arange(50_000, dtype=np.int64)[:, None],
        "y_train": np.arange(50_000) % 10,
        "x_test": np.arange(10_000, dtype=np.int64)[:, None],
        "y_test": np.arange(10_000) % 10,
    }
    sub = official_subset(full)
    assert len(sub["x_train"]) == 5 * 1017 and len(sub["x_test"]) == 1017
    assert sub["x_train"][1017, 0] == 10_000 and sub["x_train"][-1, 0] == 40_000 + 1016
    assert np.array_equal(sub["x_test"][:, 0], np.arange(1017))


def test_no_data_offline_says_what_to_place_where(tmp_path: Path) -> None:
    from ssd.data.cifar import load_cifar_arrays

    with pytest.raises(FileNotFoundError) as err:
        load_cifar_arrays("cifar10", tmp_path, download=False, variant="subset")
    text = str(err.value)
    assert str(tmp_path / "cifar10_subset.npz") in text and "data.download=true" in text
