"""Per-image results of a run: which test images it classified correctly at its own noise level.

A run writes ``main/test_predictions.npz`` (arrays ``idx``: int test-image indices, ``correct``: bool,
same length); under DDP each rank writes ``main/test_predictions.rank<r>.npz`` and their union is the
test set (an index seen twice, from a sampler's padding, counts once). Runs without the files still get
paired t intervals; only the hierarchical bootstrap needs them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

FILE = "test_predictions.npz"
RANK_GLOB = "test_predictions.rank*.npz"


def prediction_files(run_dir: Path) -> list[Path]:
    """The per-image files of ``run_dir``: the single file, else every rank's file."""
    main = Path(run_dir) / "main"
    single = main / FILE
    return [single] if single.exists() else sorted(main.glob(RANK_GLOB))


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        missing = [k for k in ("idx", "correct") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; allowed: an npz with 'idx' and 'correct'")
        idx, correct = np.asarray(data["idx"]).reshape(-1), np.asarray(data["correct"]).reshape(-1)
    if idx.shape != correct.shape:
        raise ValueError(
            f"{path}: idx has {idx.size} entries but correct has {correct.size}; allowed: equal lengths"
        )
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{path}: idx dtype={idx.dtype}; allowed: integer test-image indices")
    return idx.astype(np.int64), correct.astype(bool)


@lru_cache(maxsize=4096)
def load_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted unique test-image indices, whether each was correct); None when the run has no files."""
    files = prediction_files(run_dir)
    if not files:
        return None
    parts = [_read(f) for f in files]
    idx = np.concatenate([p[0] for p in parts])
    correct = np.concatenate([p[1] for p in parts])
    unique, first = np.unique(idx, return_index=True)  # sorted; DDP padding repeats some indices
    return unique, correct[first]


def paired_differences(a: Path, b: Path) -> tuple[np.ndarray | None, str]:
    """Per-image ``correct_a - correct_b`` (int8) over the same test images, or None and why not."""
    pa, pb = load_predictions(a), load_predictions(b)
    if pa is None or pb is None:
        return None, f"no per-image file in {(a if pa is None else b).name}"
    if not np.array_equal(pa[0], pb[0]):
        return None, f"{a.name} and {b.name} cover different test images ({pa[0].size} vs {pb[0].size})"
    return pa[1].astype(np.int8) - pb[1].astype(np.int8), ""


def count_test_images(run_dir: Path) -> int | None:
    """How many distinct test images the run's per-image files cover (None without files)."""
    found = load_predictions(run_dir)
    return None if found is None else int(found[0].size)
