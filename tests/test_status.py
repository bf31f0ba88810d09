"""``ssd-status SWEEP_DIR`` on a fabricated sweep folder: done, running (stage and epoch), stalled,
failed (why), not started, ETA; a bad folder exits 2 (issue 20 item 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ssd import status

NOW = 1_800_000_000.0

MULTIRUN = """\
hydra:
  overrides:
    task:
    - experiment=cpu_quick
    - strategy=vanilla,self_distill,clean
    - seed=0,1
"""


def job(
    sweep: Path, name: str, started: float, results: dict | None = None, ended: float | None = None
) -> Path:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (folder / "config.resolved.yaml").write_text("trainer:\n  accelerator: cpu\n  max_epochs: 15\n")
    (folder / "run.log").write_text("")
    for path in (folder / ".hydra" / "config.yaml", folder / "config.resolved.yaml", folder / "run.log"):
        os.utime(path, (started, started))
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
        os.utime(folder / "results.json", (ended, ended))
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "multiruns" / "s"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(MULTIRUN)
    job(sweep, "seed=0,strategy=vanilla", NOW - 3000, {"status": "complete", "test_acc": 0.81234}, NOW - 2000)
    job(sweep, "seed=1,strategy=vanilla", NOW - 2000, {"status": "complete", "test_acc": 0.8}, NOW - 1000)
    failed = {
        "status": "failed",
        "error": "RuntimeError: CUDA out of memory\ntraceback...",
        "stage": "teacher",
        "epoch": 3,
    }
    job(sweep, "seed=0,strategy=clean", NOW - 900, failed, NOW - 800)
    running = job(sweep, "seed=0,strategy=self_distill", NOW - 600)
    (running / "teacher").mkdir()
    (running / "teacher" / "metrics.csv").write_text(
        "epoch,step,train/loss,train/loss_epoch,val/acc\n"
        "0,10,2.1,,\n0,19,,2.0,0.3\n1,39,,1.8,0.4\n2,50,1.7,,\n"  # epochs 1 and 2 done, the third under way
    )
    os.utime(running / "teacher" / "metrics.csv", (NOW - 30, NOW - 30))
    from_log = job(sweep, "seed=1,strategy=self_distill", NOW - 500)
    (from_log / "run.log").write_text(
        "[2026-12-02 13:05:05,044][ssd][INFO] - [1/2] teacher vanilla: epoch 4/15 | train/loss 1.7 | 0.7 s\n"
    )
    os.utime(from_log / "run.log", (NOW - 10, NOW - 10))
    job(sweep, "seed=1,strategy=clean", NOW - 90_000)  # no write for a day, no results: stalled
    return sweep


def test_each_job_reads_as_it_stands(sweep: Path) -> None:
    lines = status.status_lines(sweep, now=NOW)
    assert lines[0] == f"{sweep}: 2 done, 2 running, 1 stalled, 1 failed, 0 not started (6 jobs)"
    by_name = {line.split()[1]: line for line in lines[1:-1]}
    assert by_name["seed=0,strategy=vanilla"].split()[0] == "done"
    assert by_name["seed=0,strategy=vanilla"].endswith("test acc 0.8123")
    assert "running" in by_name["seed=0,strategy=self_distill"]
    assert "teacher: epoch 3/15 (last write 30s ago)" in by_name["seed=0,strategy=self_distill"]
    assert (
        "[1/2] teacher vanilla: epoch 4/15 done (last write 10s ago)"
        in by_name["seed=1,strategy=self_distill"]
    )
    assert by_name["seed=1,strategy=clean"].split()[0] == "stalled"
    assert by_name["seed=0,strategy=clean"].split()[0] == "failed"
    assert by_name["seed=0,strategy=clean"].endswith(
        "RuntimeError: CUDA out of memory (stage teacher, epoch 3)"
    )
    # mean of the done jobs: 1000 s; the two running jobs are 600 s and 500 s in: (400 + 500) / 2 in parallel
    assert lines[-1].startswith("ETA ~7m (a job takes 16m on average over 2 done; 2 in parallel)")


def test_jobs_not_started_count_from_multirun_yaml(sweep: Path) -> None:
    (sweep / "multirun.yaml").write_text(MULTIRUN.replace("seed=0,1", "seed=0,1,2"))
    lines = status.status_lines(sweep, now=NOW)
    assert lines[0].endswith(", 3 not started (9 jobs)")
    # 900 s for the running jobs, 3 x 1000 s pending, over 2 in parallel
    assert lines[-1].startswith("ETA ~32m")


def test_no_finished_job_means_no_eta(tmp_path: Path) -> None:
    job(tmp_path, "seed=0", NOW - 10)
    assert status.status_lines(tmp_path, now=NOW)[-1] == "ETA unknown until a job finishes"


@pytest.mark.parametrize("what", ["missing", "not_a_sweep"])
def test_a_bad_folder_exits_2_naming_it(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / what
    if what == "not_a_sweep":
        folder.mkdir()
    assert status.main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "outputs/multiruns/<name>" in err


def test_main_prints_the_status(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert status.main([str(sweep)]) == 0
    assert capsys.readouterr().out.startswith(f"{sweep}: 2 done")


def test_the_command_line_replaces_what_the_experiment_sweeps(sweep: Path) -> None:
    """An experiment's ``hydra.sweeper.params`` sweeps strategy x seed; the command line's ``strategy=`` and
    ``seed=`` replace them (Hydra's rule), so the sweep is 2 jobs, not 3 x 2 x 2."""
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      strategy: clean,vanilla,self_distill\n      seed: 0,1\n"
        "  overrides:\n    task:\n    - strategy=vanilla\n    - seed=0,1\n"
    )
    assert status.planned_jobs(sweep) == 2
