"""Only a stage that ran its full schedule is published to the stage cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ssd.run import run_config
from ssd.stages import partial_schedule
from tests.helpers import SMALL, compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def trainer(**keys: Any) -> dict[str, Any]:
    return {"trainer": {"max_epochs": 3, "limit_train_batches": None, **keys}}


@pytest.mark.parametrize(
    ("keys", "epochs", "why"),
    [
        ({"fast_dev_run": True}, 1, "fast_dev_run"),
        ({"fast_dev_run": 2}, 1, "fast_dev_run"),
        ({"limit_train_batches": 0.5}, 3, "limit_train_batches"),
        ({"limit_train_batches": 4}, 3, "limit_train_batches"),
        ({"max_steps": 5}, 1, "max_steps"),
        ({"max_time": "00:00:00:01"}, 2, "max_time"),
    ],
)
def test_a_cut_schedule_is_partial(keys: dict[str, Any], epochs: int, why: str) -> None:
    reason = partial_schedule(trainer(**keys), epochs)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    ("keys", "epochs"),
    [
        ({}, 3),
        ({}, 1),  # early stopping: the configured callbacks end it, the schedule itself
        ({"limit_train_batches": 1.0}, 3),
        ({"max_steps": -1, "fast_dev_run": False}, 3),
        ({"max_steps": 10_000}, 3),  # a step limit the epochs never reach
        ({"max_time": "00:10:00:00"}, 3),
    ],
)
def test_a_full_schedule_is_published(keys: dict[str, Any], epochs: int) -> None:
    assert partial_schedule(trainer(**keys), epochs) is None


def test_a_fast_dev_run_is_never_published(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The issue's reproduction: a 1-batch network must not be stored for the full config to find."""
    cfg = compose_cfg([*SMALL, "strategy=vanilla", "+trainer.fast_dev_run=true"], tmp_path)
    with caplog.at_level("WARNING"):
        result = run_config(cfg, tmp_path / "run", "g")
    assert result["stages"]["main"]["source"] == "train"
    stages = tmp_path / "cache" / "stages"
    assert not [p for p in stages.iterdir() if not p.name.endswith(".lock")] if stages.exists() else True
    assert "not published: a partial schedule (trainer.fast_dev_run=True)" in caplog.text
    full = compose_cfg([*SMALL, "strategy=vanilla"], tmp_path)
    assert run_config(full, tmp_path / "full", "g")["stages"]["main"]["source"] == "train"
