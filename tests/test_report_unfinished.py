"""The report of a folder where some runs failed, were interrupted or never finished (``outputs/runs``
after a day of work): every such run is listed, none renames the rows or breaks a figure, and the
console gets a short summary, not the whole report."""

from __future__ import annotations

import copy
import csv
import json
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssd.report import main
from tests.test_report import BASE, console_rows, fake_run

pytestmark = pytest.mark.usefixtures("one_thread")


def config_error_run(folder: Path, name: str) -> None:
    """What ``record_config_error`` leaves: ``status: failed`` with the config as composed, unresolved where
    resolving failed, so some values differ from every complete run's, and an invalid noise level."""
    cfg = copy.deepcopy(BASE)
    cfg["strategy"] = {"name": "vanilla", "_target_": "ssd.strategies.vanilla.X"}
    cfg["noise"]["sigma"] = -1
    for section, key in (("trainer", "precision"), ("trainer", "channels_last"), ("data", "channels_last")):
        cfg[section][key] = "${oc.env:UNSET_" + key.upper() + "}"
    (folder / name).mkdir(parents=True)
    results = {"status": "failed", "error": "ConfigError: noise.sigma=-1 is not allowed", "config": cfg}
    (folder / name / "results.json").write_text(json.dumps(results))


@pytest.fixture
def day_of_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(root, "vanilla", 0.1, seed, 0.5 + 0.01 * seed)
        fake_run(root, "self_distill", 0.1, seed, 0.55 + 0.02 * seed)
    config_error_run(root, "vanilla-gaussian-1/2026-12-02_07-24-29")
    fake_run(root, "self_distill", 0.1, 2, None, status="interrupted")
    superseded = fake_run(root, "vanilla", 0.1, 3, None, status="failed")
    results = json.loads((superseded / "results.json").read_text())
    (superseded / "results.json").write_text(json.dumps({**results, "status": "superseded", "error": None}))
    pending = root / "self_distill-gaussian0.1" / "2026-12-02_08-00-00"  # a job killed before results.json
    (pending / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create({**BASE, "strategy": {"name": "self_distill"}}), pending / ".hydra" / "config.yaml"
    )
    return root


def test_failed_runs_are_listed_and_never_rename_rows_or_break_figures(
    day_of_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", UserWarning
        )  # e.g. "constrained_layout ... axes sizes collapsed to zero"
        assert main([str(day_of_runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    # the complete runs keep their plain names: the failed run's unresolved 'auto' keys are no setting
    assert "| vanilla | 50.50 ± 0.71 (n=2) |" in md and "| self_distill | 56.00 ± 1.41 (n=2) |" in md
    with open(out / "runs.csv") as handle:
        runs = list(csv.DictReader(handle))
    assert sorted(r["status"] for r in runs) == ["complete"] * 4 + [
        "failed",
        "incomplete",
        "interrupted",
        "superseded",
    ]
    assert {r["setting"] for r in runs} == {"vanilla", "self_distill"}
    for png in ("accuracy_vs_noise.png", "robustness_curves.png", "differences.png"):
        assert (out / png).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert (
        "4 complete runs, 4 failed or incomplete (1 failed, 1 interrupted, 1 superseded, 1 incomplete)"
        in printed
    )
    for listed in (
        "ConfigError: noise.sigma=-1",
        "interrupted by SIGTERM",
        "superseded",
        "2026-12-02_08-00-00",
    ):
        assert listed in printed and listed in md
    # short: the main table, the verdicts and the paths, not report.md's sections
    assert len(printed.splitlines()) < 40 and "## " not in printed
    rows = {cells[0]: cells[1:] for cells in console_rows(printed)}
    assert rows["vanilla"] == ["50.50 ± 0.71 (n=2)"]
    assert rows["self_distill − vanilla"] == ["≥ +2 pts?", "undecided"]  # +5.5 [-13.6, +24.6] from two seeds
    assert f"Wrote {out}/:" in printed and "  differences.png" in printed and "  report.md" in printed


def test_a_long_list_of_unfinished_runs_is_cut_in_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "runs"
    fake_run(root, "vanilla", 0.1, 0, 0.5)
    for seed in range(1, 13):
        fake_run(root, "vanilla", 0.1, seed, None, status="failed")
    assert main([str(root), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert (
        printed.count("RuntimeError: out of memory") == 8
        and "… and 4 more (report.md lists them all)" in printed
    )
    assert (tmp_path / "report" / "report.md").read_text().count("RuntimeError: out of memory") == 12
