"""Per-image results of a run: what it predicted for each test image, read from ``test_predictions.npz``.

A run writes ``main/test_predictions.npz``; under DDP each rank writes ``main/test_predictions.rank<r>.npz``
and their union is the test set (an index seen twice, from a sampler's padding, counts once). The file
holds one value per test image in each array of ``PER_IMAGE`` (all the same length), plus the optional
per-class ``CLASS_NAMES`` array:

* ``idx`` (int, required): the image's index in the test set;
* ``correct`` (bool, required): the prediction at the run's own (training) noise level was right;
* ``correct_clean`` (bool, optional): the same on the clean image;
* ``pred`` (int, optional): the predicted class at the training noise level;
* ``pred_clean`` (int, optional): the predicted class on the clean image;
* ``label`` (int, optional): the true class; with ``pred`` it gives confusion matrices and per-class
  accuracy (``correct`` must then equal ``pred == label``);
* ``classes`` (str, optional, one per class index, not per image): class names for the figures.

Runs without files still get paired t intervals; the hierarchical bootstrap needs ``correct``, the
confusion matrices ``pred`` and ``label``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FILE = "test_predictions.npz"
RANK_GLOB = "test_predictions.rank*.npz"
#: per-image arrays: name -> (required, kind: "i" integer / "b" bool)
PER_IMAGE = {
    "idx": (True, "i"),
    "correct": (True, "b"),
    "correct_clean": (False, "b"),
    "pred": (False, "i"),
    "pred_clean": (False, "i"),
    "label": (False, "i"),
}
CLASS_NAMES = "classes"


@dataclass(frozen=True, eq=False)
class Predictions:
    """One run's per-image arrays over its distinct test images, sorted by ``idx``; absent ones None."""

    idx: np.ndarray
    correct: np.ndarray
    correct_clean: np.ndarray | None = None
    pred: np.ndarray | None = None
    pred_clean: np.ndarray | None = None
    label: np.ndarray | None = None
    classes: tuple[str, ...] | None = None

    @property
    def has_classes(self) -> bool:
        """Whether confusion matrices can be made: predicted and true class of every image."""
        return self.pred is not None and self.label is not None


def prediction_files(run_dir: Path) -> list[Path]:
    """The per-image files of ``run_dir``: the single file, else every rank's file."""
    main = Path(run_dir) / "main"
    single = main / FILE
    return [single] if single.exists() else sorted(main.glob(RANK_GLOB))


def _check(path: Path, name: str, array: np.ndarray, kind: str, size: int) -> np.ndarray:
    array = array.reshape(-1)
    if array.size != size:
        raise ValueError(
            f"{path}: {name} has {array.size} entries but idx has {size}; allowed: equal lengths"
        )
    if kind == "i" and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: {name} dtype={array.dtype}; allowed: integers")
    return array.astype(np.int64) if kind == "i" else array.astype(bool)


def _read(path: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    with np.load(path) as data:
        missing = [k for k, (required, _) in PER_IMAGE.items() if required and k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; allowed: an npz with 'idx' and 'correct'")
        size = data["idx"].size
        arrays = {
            k: _check(path, k, data[k], kind, size) for k, (_, kind) in PER_IMAGE.items() if k in data.files
        }
        classes = tuple(str(c) for c in data[CLASS_NAMES].reshape(-1)) if CLASS_NAMES in data.files else None
    if (
        "pred" in arrays
        and "label" in arrays
        and not np.array_equal(arrays["correct"], arrays["pred"] == arrays["label"])
    ):
        raise ValueError(
            f"{path}: correct differs from pred == label; allowed: arrays of the same predictions"
        )
    return arrays, classes


@lru_cache(maxsize=4096)
def load_predictions(run_dir: Path) -> Predictions | None:
    """The run's per-image arrays (an array only when every rank's file has it); None without files."""
    files = prediction_files(run_dir)
    if not files:
        return None
    parts = [_read(f) for f in files]
    names = [k for k in PER_IMAGE if all(k in arrays for arrays, _ in parts)]
    joined = {k: np.concatenate([arrays[k] for arrays, _ in parts]) for k in names}
    unique, first = np.unique(joined["idx"], return_index=True)  # sorted; DDP padding repeats some indices
    arrays = {k: v[first] for k, v in joined.items() if k != "idx"}
    return Predictions(idx=unique, **arrays, classes=parts[0][1])


def paired_differences(pairs: Sequence[tuple[Path, Path]]) -> tuple[np.ndarray | None, str]:
    """Per-seed, per-image ``correct_a - correct_b`` (seeds x images, int8) for runs ``(a, b)`` of each
    seed, all over the same test images in the same order; or None and why not."""
    rows, reference = [], None
    for a, b in pairs:
        pa, pb = load_predictions(a), load_predictions(b)
        if pa is None or pb is None:
            return None, f"no per-image file in {(a if pa is None else b).name}"
        if reference is None:
            reference = pa.idx
        for run, found in ((a, pa), (b, pb)):
            if not np.array_equal(found.idx, reference):
                return None, f"{run.name} covers other test images ({found.idx.size} vs {reference.size})"
        rows.append(pa.correct.astype(np.int8) - pb.correct.astype(np.int8))
    return (np.stack(rows), "") if rows else (None, "no pairs")


def count_test_images(run_dir: Path) -> int | None:
    """How many distinct test images the run's per-image files cover (None without files)."""
    found = load_predictions(run_dir)
    return None if found is None else int(found.idx.size)
