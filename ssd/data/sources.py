"""Finding and decoding datasets on disk.

Kept apart from the datamodules so that "where does the data come from" has one answer,
one log line (logger ``ssd.data``) and one error message when nothing is found.

CIFAR lookup order under the data root (``variant="auto"``; ``"full"`` stops before the
subset sources, ``"subset"`` uses only them):

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

import numpy as np

from ssd.results import file_mode

log = logging.getLogger("ssd.data")

ENV_VAR = "SSD_DATA_DIR"
CIFAR_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
CIFAR_TV_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
VARIANTS = ("auto", "full", "subset")
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
MOSAIC_COLUMNS = 100

Arrays = dict[str, np.ndarray]


def _absolute(path: str | Path) -> Path:
    """Expand ``~``; make a relative path relative to where the user launched from.

    Hydra may change the working directory (``hydra.job.chdir``); its original cwd is what a
    relative path in a config means.
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        if HydraConfig.initialized():
            return Path(get_original_cwd()) / p
    except (ImportError, ValueError):
        pass
    return p.absolute()


def resolve_data_root(cfg_root: str | Path | None) -> Path:
    """The dataset root: ``$SSD_DATA_DIR`` when set, else the config value ``data.root``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _absolute(env)
    if cfg_root is None or str(cfg_root).strip() == "":
        raise ValueError(
            f"data.root is not set and {ENV_VAR} is empty: set one of them to the dataset folder"
        )
    return _absolute(cfg_root)


# --------------------------------------------------------------------------- validation


def validate_arrays(arrays: Arrays, num_classes: int, where: str, image_size: int | None = 32) -> Arrays:
    """Check dtypes/shapes/labels of decoded arrays; return them with int64 labels.

    Errors name ``where`` (the file or folder) so a broken copy is easy to find.
    """
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{where}: missing arrays {missing} (expected {list(ARRAY_KEYS)})")
    out: Arrays = {}
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.dtype != np.uint8:
            raise ValueError(f"{where}: x_{split} has dtype {x.dtype}, expected uint8 images in 0..255")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"{where}: x_{split} has shape {x.shape}, expected (N, H, W, 3) (HWC, RGB)")
        if image_size is not None and x.shape[1:3] != (image_size, image_size):
            raise ValueError(
                f"{where}: x_{split} images are {x.shape[1]}x{x.shape[2]}, expected {image_size}x{image_size}"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{where}: y_{split} has shape {y.shape} dtype {y.dtype}, expected 1-d integer labels"
            )
        if len(y) != len(x):
            raise ValueError(f"{where}: {len(x)} images in x_{split} but {len(y)} labels in y_{split}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"{where}: y_{split} has labels in [{y.min()}, {y.max()}], expected 0..{num_classes - 1}"
            )
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = y.astype(np.int64)
    return out


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
    root = _absolute(root)
    cache = _absolute(cache_dir) if cache_dir is not None else None
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
    if variant == "subset":
        why = " (variant=subset cannot be downloaded)"
    else:
        why = "" if download else " (data.download=false)"
    message = (
        f"No {name} data found under data.root={root} (variant={variant}){why}. Looked for:\n"
        f"{looked}{broken}\n"
        f"Fix: point data.root or the {ENV_VAR} environment variable at a folder holding one of these "
        f"(e.g. {ENV_VAR}=/path/to/shared/data), or set data.download=true on a machine with internet."
    )
    if not download or variant == "subset":
        raise FileNotFoundError(message)
    log.info("no local %s under %s; downloading with torchvision", name, root)
    try:
        _download(name, root)
        arrays = validate_arrays(_read_torchvision(name, root), num_classes, str(root / CIFAR_TV_DIRS[name]))
    except Exception as e:  # offline machine, read-only root, ...: keep the one clear message
        raise FileNotFoundError(f"{message}\nThe torchvision download failed: {type(e).__name__}: {e}") from e
    return arrays, _describe(name, "torchvision download", root / CIFAR_TV_DIRS[name], arrays)


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


# --------------------------------------------------------------------------- image folders


def unreadable_images(paths: list[str], threads: int = 16) -> list[tuple[str, str]]:
    """(path, reason) of the files PIL cannot identify as an image (header read only: fast).

    A text file named ``.jpg``, an empty or cut-off-at-the-start file fail here; an image cut
    off later still fails at decode time, where ``FolderDataModule`` names the file.
    """
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def check(path: str) -> tuple[str, str] | None:
        try:
            with Image.open(path) as im:
                if im.width < 1 or im.height < 1:
                    return path, f"empty image {im.width}x{im.height}"
        except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
            return path, f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:  # I/O bound
        return [bad for bad in pool.map(check, paths, chunksize=256) if bad is not None]


def scan_image_folder(
    root: str | Path, splits: tuple[str, ...] = ("train", "val"), check_images: bool = True
) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """Scan ``root/<split>/<class>/*`` with ImageFolder semantics; fail early and clearly.

    Returns (classes, {split: [(path, class_index), ...]}). Every split must hold the same
    classes and every class folder at least one image, so labels mean the same in train and val.
    ``check_images``: read every file's header and skip the ones that are not images (the log
    says how many and which), instead of crashing mid-epoch.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = _absolute(root)
    classes: list[str] | None = None
    samples: dict[str, list[tuple[str, int]]] = {}
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            raise ValueError(
                f"image folder split missing: {folder} (expected {root}/{split}/<class>/<images>)"
            )
        try:
            split_classes, class_to_idx = find_classes(str(folder))
        except FileNotFoundError as e:
            raise ValueError(f"{folder}: no class folders ({e})") from None
        if classes is None:
            classes = split_classes
        elif split_classes != classes:
            only_first = sorted(set(classes) - set(split_classes))
            only_here = sorted(set(split_classes) - set(classes))
            raise ValueError(
                f"{folder}: class folders differ from {root / splits[0]}: "
                f"missing here {only_first[:10]}, extra here {only_here[:10]}"
            )
        found = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if check_images and found:
            bad = unreadable_images([path for path, _ in found])
            if bad:
                skipped = {path for path, _ in bad}
                found = [(path, c) for path, c in found if path not in skipped]
                shown = "; ".join(f"{path} ({why})" for path, why in bad[:5])
                log.warning(
                    "%s: skipping %d file(s) that are not readable images%s: %s",
                    folder,
                    len(bad),
                    " (first 5)" if len(bad) > 5 else "",
                    shown,
                )
        counts = np.bincount([c for _, c in found], minlength=len(split_classes))
        empty = [split_classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(
                f"{folder}: class folder(s) with no images: {[str(folder / c) for c in empty[:10]]}"
            )
        samples[split] = found
    assert classes is not None
    return classes, samples
