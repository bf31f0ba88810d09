"""Blind-noise runs (``noise.sigma_max`` set: trained and tested with sigma drawn per image from
[sigma, sigma_max]) are labelled by what was tested, and never pooled or paired with fixed-sigma runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ssd.report import main
from tests.test_report import console_rows, fake_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_blind_runs_are_their_own_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "sweep"
    for seed in (0, 1):
        fake_run(root, "vanilla", 0.1, seed, 0.50 + 0.02 * seed)
        fake_run(root, "self_distill", 0.1, seed, 0.53 + 0.02 * seed)
        fake_run(root, "vanilla", 0.1, seed, 0.70 + 0.02 * seed, noise={"sigma_max": 0.3})
        fake_run(root, "self_distill", 0.1, seed, 0.60 + 0.02 * seed, noise={"sigma_max": 0.3})
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    # rows stay the methods (sigma_max is the column, not a setting); fixed levels first
    assert "| strategy | σ=0.1 | σ∈[0.1,0.3] |" in md
    assert "| vanilla | 51.00 ± 1.41 (n=2) | 71.00 ± 1.41 (n=2) |" in md
    assert "| self_distill | 54.00 ± 1.41 (n=2) | 61.00 ± 1.41 (n=2) |" in md
    assert "- σ∈[0.1,0.3]: self_distill ≥ vanilla + 2 pts: no (self_distill − vanilla = -10.00 [" in md
    with open(out / "differences.csv") as handle:
        diffs = {(r["level"], r["level_max"]): float(r["mean"]) for r in csv.DictReader(handle)}
    assert diffs == {
        ("0.1", "0.1"): pytest.approx(3.0),
        ("0.1", "0.3"): pytest.approx(-10.0),
    }  # paired within
    with open(out / "runs.csv") as handle:
        assert sorted(r["level_max"] for r in csv.DictReader(handle)) == ["0.1"] * 4 + ["0.3"] * 4
    rows = {cells[0]: cells[1:] for cells in console_rows(capsys.readouterr().out)}
    assert rows["method"] == ["σ=0.1", "σ∈[0.1,0.3]"]
