"""CIFAR-10/100: finding and decoding the files, and the datamodule that holds them in memory.

Finding has one answer, one log line (logger ``ssd.data``) and one error message when nothing is
found. Lookup order under the data root (``variant="auto"``; ``"full"`` stops before the subset
sources, ``"subset"`` uses only them):

1. torchvision's own files (``cifar-10-batches-py`` / ``cifar-100-python``), checksummed by
   ``torchvision.datasets.CIFAR10/100``;
2. a decoded array file ``<name>.npz``;
3. the decoded cache ``<cache_dir>/<name>.npz`` (written by step 4);
4. a WebP mosaic folder ``<name>/`` (the offline format of ``shared/data``);
5. ``<name>_subset.npz``, then ``<cache_dir>/<name>_subset.npz``, then a mosaic folder
   ``<name>_subset/`` (e.g. ``cifar100_subset/``);
6. torchvision download into the root when ``download`` is true (not for ``"subset"``).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ssd.data.memory import ARRAY_KEYS, Arrays, InMemoryDataModule, validate_arrays
from ssd.data.roots import ENV_VAR, absolute_path, resolve_data_root
from ssd.results import file_mode

log = logging.getLogger("ssd.data")

CIFAR_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
CIFAR_TV_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
#: the usual per-channel constants: known before any data is read
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
VARIANTS = ("auto", "full", "subset")
MOSAIC_COLUMNS = 100


# --------------------------------------------------------------------------- readers


def _read_torchvision(name: str, root: Path) -> Arrays:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    parts = {}
    for split in ("train", "test"):
        ds = cls(str(root), train=split == "train", download=False)
        parts[f"x_{split}"] = np.asarray(ds.data)
        parts[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
    return parts


def _read_npz(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in ARRAY_KEYS if k in f.files}


def decode_mosaic(path: Path, tile: int = 32, columns: int = MOSAIC_COLUMNS) -> np.ndarray:
    """Decode a WebP mosaic of ``tile``x``tile`` RGB images, ``columns`` per row, row-major."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"))
    if a.shape[0] % tile or a.shape[1] != tile * columns:
        raise ValueError(
            f"{path}: mosaic is {a.shape[1]}x{a.shape[0]}, expected width {tile * columns} and a height multiple of {tile}"
        )
    rows = a.shape[0] // tile
    return a.reshape(rows, tile, columns, tile, 3).transpose(0, 2, 1, 3, 4).reshape(-1, tile, tile, 3)


def _mosaic_files(folder: Path, split: str) -> list[Path]:
    """``<split>.webp`` or ``<split>_1.webp .. <split>_K.webp`` in numeric order.

    Every file but the last must be full (whole rows); the last may end in padding tiles.
    """
    single = folder / f"{split}.webp"
    if single.is_file():
        return [single]
    numbered = [p for p in folder.glob(f"{split}_*.webp") if re.fullmatch(rf"{split}_\d+\.webp", p.name)]
    return sorted(numbered, key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def _is_mosaic_folder(folder: Path) -> bool:
    return (
        (folder / "labels.npz").is_file()
        and bool(_mosaic_files(folder, "train"))
        and bool(_mosaic_files(folder, "test"))
    )


def _read_mosaic_folder(folder: Path) -> Arrays:
    with np.load(folder / "labels.npz", allow_pickle=False) as lab:
        labels = {"train": lab["y_train"], "test": lab["y_test"]}
    out: Arrays = {}
    for split in ("train", "test"):
        x = np.concatenate([decode_mosaic(p) for p in _mosaic_files(folder, split)])
        n = len(labels[split])
        if len(x) < n:
            raise ValueError(f"{folder}: {len(x)} {split} images in the mosaics but {n} labels")
        out[f"x_{split}"] = x[:n]  # a partial last mosaic row is padding
        out[f"y_{split}"] = labels[split]
    return out


def _write_cache(arrays: Arrays, path: Path) -> None:
    """Write atomically (tmp file + ``os.replace``) so parallel jobs never read half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz.tmp")
        try:
            os.fchmod(fd, file_mode())  # the user's umask, not mkstemp's owner-only mode: caches are shared
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        log.info("cached decoded arrays at %s", path)
    except OSError as e:  # a read-only cache is a missed speed-up, not an error
        log.warning("could not write the decode cache %s (%s)", path, e)


# --------------------------------------------------------------------------- lookup


def _candidates(
    name: str, root: Path, variant: str, cache_dir: Path | None
) -> list[tuple[str, Path, Callable[[], Arrays]]]:
    """(kind, path, reader) in lookup order; a reader runs only if its path exists."""
    full: list[tuple[str, Path, Callable[[], Arrays]]] = [
        ("torchvision files", root / CIFAR_TV_DIRS[name], lambda: _read_torchvision(name, root)),
        ("array file", root / f"{name}.npz", lambda: _read_npz(root / f"{name}.npz")),
    ]
    subset: list[tuple[str, Path, Callable[[], Arrays]]] = [
        ("array file", root / f"{name}_subset.npz", lambda: _read_npz(root / f"{name}_subset.npz")),
    ]
    for group, stem in ((full, name), (subset, f"{name}_subset")):
        folder = root / stem
        if cache_dir is not None:
            cached = cache_dir / f"{stem}.npz"
            group.append(("decoded cache", cached, lambda p=cached: _read_npz(p)))
        group.append(("mosaic folder", folder, lambda f=folder: _read_mosaic_folder(f)))
    return {"auto": full + subset, "full": full, "subset": subset}[variant]


def _exists(kind: str, path: Path) -> bool:
    if kind == "mosaic folder":
        return _is_mosaic_folder(path)
    if kind == "torchvision files":
        return path.is_dir()
    return path.is_file()


def load_cifar_arrays(
    name: str,
    root: str | Path,
    download: bool = False,
    variant: str = "auto",
    cache_dir: str | Path | None = None,
) -> tuple[Arrays, str]:
    """Find CIFAR-10/100 under ``root`` and return (arrays, source description).

    Arrays: ``x_train``/``x_test`` uint8 (N, 32, 32, 3), ``y_train``/``y_test`` int64.
    See the module docstring for the lookup order.
    """
    if name not in CIFAR_NUM_CLASSES:
        raise ValueError(f"unknown CIFAR name {name!r}; expected one of {sorted(CIFAR_NUM_CLASSES)}")
    if variant not in VARIANTS:
        raise ValueError(f"data.variant={variant!r}; expected one of {VARIANTS}")
    root = absolute_path(root)
    cache = absolute_path(cache_dir) if cache_dir is not None else None
    num_classes = CIFAR_NUM_CLASSES[name]
    candidates = _candidates(name, root, variant, cache)
    skipped: list[str] = []
    for kind, path, read in candidates:
        if not _exists(kind, path):
            continue
        try:
            try:
                raw = read()
            except Exception as e:
                raise ValueError(f"{path}: unreadable {kind} ({type(e).__name__}: {e})") from e
            arrays = validate_arrays(raw, num_classes, str(path))
        except ValueError as e:  # checksum failure, truncated file, bad arrays: say why, try the next
            if kind == "array file":  # put there on purpose: a clear error beats a silent fallback
                raise
            log.warning("skipping %s: %s", kind, e)
            skipped.append(str(e))
            continue
        if kind == "mosaic folder" and cache is not None:
            _write_cache(arrays, cache / f"{path.name}.npz")
        return arrays, _describe(name, kind, path, arrays)

    looked = "\n".join(f"  - {kind}: {path}" for kind, path, _ in candidates)
    broken = "".join(f"\n  (unusable: {s})" for s in skipped)
    message = (
        f"No {name} data found under data.root={root} (variant={variant}). Looked for:\n{looked}{broken}\n"
        f"Fix: put one of these there, or point data.root / {ENV_VAR} at a folder that has one "
        f"(e.g. {ENV_VAR}=/path/to/shared/data). "
        + (
            f"On a machine with internet ssd downloads {name} itself (data.download=true, the default)"
            + (f" and takes the {SUBSET_PER_BATCH}-per-batch subset from it" if variant == "subset" else "")
            + "."
            if download
            else "Or set data.download=true on a machine with internet."
        )
    )
    if not download:
        raise FileNotFoundError(message)
    log.info("no local %s under %s; downloading with torchvision", name, root)
    try:
        _download(name, root)
        arrays = validate_arrays(_read_torchvision(name, root), num_classes, str(root / CIFAR_TV_DIRS[name]))
    except Exception as e:  # offline machine, read-only root, ...: keep the one clear message
        raise FileNotFoundError(
            f"{message}\nThe download failed (no internet?): {type(e).__name__}: {e}"
        ) from e
    kind = "torchvision download"
    if variant == "subset":
        arrays, kind = (
            official_subset(arrays),
            f"torchvision download, first {SUBSET_PER_BATCH} of each batch",
        )
    return arrays, _describe(name, kind, root / CIFAR_TV_DIRS[name], arrays)


#: images per official batch in the CIFAR subset (``cifar10_subset.npz``: 5 x 1017 train, 1017 test)
SUBSET_PER_BATCH = 1017
OFFICIAL_BATCH = 10_000


def official_subset(arrays: Arrays, per_batch: int = SUBSET_PER_BATCH) -> Arrays:
    """The subset as the offline ``cifar10_subset.npz`` defines it: the first ``per_batch`` images of
    each official training batch (10,000 images each, in order) and of the test batch."""
    n_batches = len(arrays["y_train"]) // OFFICIAL_BATCH
    train = [slice(b * OFFICIAL_BATCH, b * OFFICIAL_BATCH + per_batch) for b in range(n_batches)]
    return {
        "x_train": np.concatenate([arrays["x_train"][s] for s in train]),
        "y_train": np.concatenate([arrays["y_train"][s] for s in train]),
        "x_test": arrays["x_test"][:per_batch],
        "y_test": arrays["y_test"][:per_batch],
    }


def _download(name: str, root: Path) -> None:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    for train in (True, False):
        cls(str(root), train=train, download=True)


def _describe(name: str, kind: str, path: Path, arrays: Arrays) -> str:
    n_train, n_test = len(arrays["y_train"]), len(arrays["y_test"])
    desc = f"{name} from {kind} {path} ({n_train} train / {n_test} test images)"
    log.info("using %s", desc)
    return desc


# --------------------------------------------------------------------------- datamodule


class CIFARDataModule(InMemoryDataModule):
    """CIFAR-10/100 from wherever ``load_cifar_arrays`` finds it, held in memory.

    Args (the shared settings are those of ``InMemoryDataModule`` and ``ShardedDataModule``):
        name: ``cifar10`` or ``cifar100``.
        root: data root (``$SSD_DATA_DIR`` overrides it).
        variant: ``auto`` | ``full`` | ``subset`` (the module docstring gives the lookup order).
        download: torchvision download into ``root`` when nothing local is found.
        cache_dir: where decoded WebP mosaics are cached as npz (None: no cache).
    """

    def __init__(
        self,
        name: Literal["cifar10", "cifar100"],
        root: str | Path | None,
        variant: Literal["auto", "full", "subset"],
        download: bool,
        cache_dir: str | Path | None,
        **settings: Any,
    ) -> None:
        if name not in CIFAR_NUM_CLASSES:
            raise ValueError(f"data.name={name!r}; expected one of {sorted(CIFAR_NUM_CLASSES)}")
        super().__init__(num_classes=CIFAR_NUM_CLASSES[name], image_size=32, name=name, **settings)
        self.root, self.variant, self.download, self.cache_dir = root, variant, download, cache_dir
        self._stats = CIFAR_STATS[name]

    def load_arrays(self) -> tuple[Arrays, str]:
        return load_cifar_arrays(
            self.name,
            resolve_data_root(self.root),
            download=self.download,
            variant=self.variant,
            cache_dir=self.cache_dir,
        )
