"""``python -m ssd.report``: golden mean/std on hand-made results, and a report of real runs."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats as scipy_stats

from ssd.report import Stat, main
from ssd.report.stats import (
    Interval,
    at_least,
    hierarchical_bootstrap,
    paired_t,
    sign,
    t_quantile,
    within_margin,
)
from tests.helpers import REPO, SMALL, compose_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests.helpers.ONE_THREAD

BASE = OmegaConf.to_container(compose_cfg(["data=synthetic", "model=resnet20"]), resolve=True)


def fake_run(
    folder: Path,
    strategy: str,
    sigma: float,
    seed: int,
    acc: float | None,
    status: str = "complete",
    keys: dict | None = None,
    method: str | None = None,
    stages: dict | None = None,
    correct: np.ndarray | list[np.ndarray] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    noise: dict | None = None,
) -> Path:
    """A results.json as the pipeline writes it (only the fields the report reads are real).

    ``method`` sets ``results["method"]``; ``stages`` ``results["stages"]``; ``correct`` writes the
    per-image file ``main/test_predictions.npz`` (a list: one ``test_predictions.rank<r>.npz`` per rank,
    striding the test images as a DistributedSampler does) with the other per-image ``arrays`` (split over
    ranks alike); ``noise`` adds noise config keys (e.g. ``sigma_max``).
    """
    cfg = copy.deepcopy(BASE)
    cfg["strategy"] = {"name": strategy, "_target_": f"ssd.strategies.{strategy}.X", **(keys or {})}
    cfg["noise"]["sigma"], cfg["seed"], cfg["data"]["seed"] = sigma, seed, seed
    cfg["noise"].update(noise or {})
    cfg["sweep_name"] = f"sweep-{seed}"  # differs between runs but is not a setting
    extra = "".join(f",strategy.{k}={v}" for k, v in (keys or {}).items())
    tag = f",method={method}" if method else ""
    blind = f",noise.sigma_max={noise['sigma_max']}" if noise and "sigma_max" in noise else ""
    run = folder / f"strategy={strategy},noise.sigma={sigma},seed={seed}{extra}{tag}{blind}"
    run.mkdir(parents=True)
    results: dict[str, Any] = {"status": status, "config": cfg}
    if status == "complete":
        results.update(
            {
                "strategy": strategy,
                "seed": seed,
                "test_acc": acc,
                "clean_acc": acc + 0.1,
                "noise": {"name": "gaussian", "level_name": "sigma", "level": sigma},
                "robustness": {"sigma=0": acc + 0.1, f"sigma={sigma:g}": acc, "sigma=0.5": acc - 0.2},
            }
        )
    else:
        results["error"] = (
            "interrupted by SIGTERM" if status == "interrupted" else "RuntimeError: out of memory"
        )
    if method is not None:
        results["method"] = method
    if stages is not None:
        results["stages"] = stages
    if correct is not None:
        (run / "main").mkdir()
        per_image = {k: v for k, v in (arrays or {}).items() if k != "classes"}
        names = {k: v for k, v in (arrays or {}).items() if k == "classes"}
        if isinstance(correct, list):
            ranks = len(correct)
            for rank, part in enumerate(correct):
                idx = np.arange(rank, rank + len(part) * ranks, ranks)
                mine = {k: v[idx] for k, v in per_image.items()}
                np.savez(
                    run / "main" / f"test_predictions.rank{rank}.npz", idx=idx, correct=part, **mine, **names
                )
        else:
            idx = np.arange(len(correct))
            np.savez(run / "main" / "test_predictions.npz", idx=idx, correct=correct, **per_image, **names)
    (run / "results.json").write_text(json.dumps(results))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed, acc in enumerate((0.5, 0.6, 0.7)):
        fake_run(root, "vanilla", 0.1, seed, acc)
    fake_run(root, "vanilla", 0.2, 0, 0.4)
    for seed, acc in enumerate((0.8, 0.9)):
        fake_run(root, "self_distill", 0.1, seed, acc, keys={"lambda": 0.1})
    fake_run(root, "self_distill", 0.1, 0, 0.3, keys={"lambda": 1.0})
    fake_run(root, "self_distill", 0.2, 0, 0.0, status="failed", keys={"lambda": 0.1})
    pending = root / "strategy=clean,noise.sigma=0.1,seed=0"  # a job that started and died without a word
    pending.mkdir()
    OmegaConf.save(
        OmegaConf.create({**BASE, "strategy": {"name": "clean"}}), pending / "config.resolved.yaml"
    )
    fq = {
        "comparisons": {
            "noisy_teacher": {
                "input": "noisy",
                "cka": {"stem": 0.5, "layer1": 0.7},
                "rel_mse": {"stem": 0.2, "layer1": 0.1},
            }
        }
    }
    (root / "strategy=vanilla,noise.sigma=0.1,seed=0" / "feature_quality.json").write_text(json.dumps(fq))
    return root


def test_stat_golden_values() -> None:
    s = Stat.of([0.5, 0.6, 0.7])
    assert s.n == 3 and s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1)
    assert s.text() == "60.00 ± 10.00 (n=3)"
    assert Stat.of([0.4]).text() == "40.00 (n=1)"  # no spread from one seed


def test_report_table_curves_and_unfinished_runs(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| vanilla | 60.00 ± 10.00 (n=3) | 40.00 (n=1) |" in md
    # runs that differ in lambda are different settings, never averaged together
    assert "| self_distill (strategy.lambda=0.1) | 85.00 ± 7.07 (n=2) | — |" in md
    assert "| self_distill (strategy.lambda=1.0) | 30.00 (n=1) | — |" in md
    assert rows["vanilla"].index("vanilla") < md.index("self_distill (strategy.lambda=0.1) |")  # paper order
    # the difference table of the reference strategy
    assert "| vanilla | +25.00 | — |" in md
    # robustness curve of vanilla trained at sigma=0.1: mean over seeds per test level
    assert "| vanilla | 70.00 | 60.00 | 40.00 |" in md
    # failed and never-finished jobs are listed, not dropped
    assert (
        "RuntimeError: out of memory" in md
        and "strategy=clean,noise.sigma=0.1,seed=0" in md
        and "incomplete" in md
    )
    # feature quality numbers of the runs that have them
    assert "| vanilla | σ=0.1 | noisy_teacher | cka | 0.500 (n=1) | 0.700 (n=1) |" in md
    with open(out / "accuracy.csv") as handle:
        acc = {(r["strategy"], r["level"], r["metric"]): r for r in csv.DictReader(handle)}
    row = acc[("vanilla", "0.1", "test_acc")]
    assert (
        float(row["mean"]) == pytest.approx(0.6)
        and float(row["std"]) == pytest.approx(0.1)
        and row["n"] == "3"
    )
    with open(out / "runs.csv") as handle:
        statuses = sorted(r["status"] for r in csv.DictReader(handle))
    assert statuses == ["complete"] * 7 + ["failed", "incomplete"]
    for png in ("accuracy_vs_noise.png", "robustness_curves.png"):
        assert (out / png).stat().st_size > 1000


def test_report_of_an_empty_folder_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_report_of_real_runs(tmp_path: Path) -> None:
    """Two strategies x two seeds of real tiny runs, then the CLI exactly as a user types it."""
    from ssd.run import run_config  # here: the report's own tests need no training code

    sweep = tmp_path / "sweep"
    results = {}
    for strategy in ("vanilla", "clean"):
        for seed in (0, 1):
            cfg = compose_cfg([*SMALL, f"strategy={strategy}", f"seed={seed}"], tmp_path)
            results[(strategy, seed)] = run_config(cfg, sweep / f"strategy={strategy},seed={seed}", "g")[
                "test_acc"
            ]
    proc = subprocess.run(
        [sys.executable, "-m", "ssd.report", str(sweep)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {cells[0]: cells[1:] for cells in console_rows(proc.stdout)}
    for strategy in ("vanilla", "clean"):
        assert rows[strategy] == [Stat.of([results[(strategy, 0)], results[(strategy, 1)]]).text()]
    assert (sweep / "report" / "accuracy_vs_noise.png").exists()


def console_rows(stdout: str) -> list[list[str]]:
    """The cells of every table row the console summary printed (its columns are padded to line up)."""
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in stdout.splitlines()
        if line.startswith("| ")
    ]


def run_sweep_script(script: str, tmp_path: Path, env: dict[str, str], args: list[str]) -> Path:
    """Run ``experiments/<script>`` as a user would (sweep "smoke", outputs and cache under tmp_path) on
    tiny synthetic data; return the sweep folder."""
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "SSD_LOG_DIR": str(tmp_path / "outputs"),
        "SSD_CACHE_DIR": str(tmp_path / "cache"),
        "SWEEP": "smoke",
        "SEEDS": "0 1",
        "PY": sys.executable,
        **env,
    }
    args = ["data=synthetic", "~data.variant", "data.train=64", "data.test=32", "data.batch_size=16", *args]
    cmd = ["bash", f"experiments/{script}", "trainer.max_epochs=1", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " failed (see " not in proc.stdout, proc.stdout  # a job that failed (cpu_fidelity.sh's line)
    return tmp_path / "outputs" / "multiruns" / "smoke"


@pytest.mark.slow
def test_cpu_compare_script_end_to_end(tmp_path: Path) -> None:
    """experiments/cpu_compare.sh on tiny synthetic data: two seed shards in parallel, then the report."""
    sweep = run_sweep_script("cpu_compare.sh", tmp_path, {"STRATEGIES": "vanilla,self_distill"}, [])
    md = (sweep / "report" / "report.md").read_text()
    assert "16 complete runs, 0 failed or incomplete" in md
    for method in ("vanilla", "self_distill:same"):  # report rows are methods
        row = next(line for line in md.splitlines() if line.startswith(f"| {method} | "))
        assert row.count("(n=2)") == 4  # sigma 0.1, 0.2, 0.3, 0.5, two seeds each
    logs = "".join(p.read_text() for p in sorted(sweep.glob("shard*.log")))
    # the stage announcements: "[1/2] teacher vanilla (cache 56c8a1b2…)"
    teacher = re.findall(r"\] teacher vanilla \((\w+) ", logs)
    assert teacher == ["cache"] * 8  # every self_distill teacher is the matching vanilla run's network


@pytest.mark.slow
def test_cpu_fidelity_script_end_to_end(tmp_path: Path) -> None:
    """experiments/cpu_fidelity.sh on tiny synthetic data: every method group and the beyond rows at one
    sigma, then the README's report with its contrasts (SSD against each baseline, beyond rows against SSD).
    Its job folder names pass 255 bytes (see test_sweep's job folder test)."""
    env = {"SIGMAS": "0.2", "BEYOND": "1", "BEYOND_SIGMAS": "0.2"}
    # lr 0.01: at lr 0.1 four steps leave BatchNorm statistics that make a generation-3 chain diverge
    # (the cache then refuses the non-finite student, as it should)
    sweep = run_sweep_script(
        "cpu_fidelity.sh", tmp_path, env, ["data.limit_train=null", "optim.optimizer.lr=0.01"]
    )
    md = (sweep / "report" / "report.md").read_text()
    methods = ["clean", "vanilla", "self_distill:same", "self_distill:independent", "student_teacher"]
    methods += ["denoise:clean", "denoise:noise2noise", "joint", "online_distill:same"]
    methods += ["self_distill:same:gen2", "self_distill:same:gen3"]
    for method in methods:
        assert re.search(rf"^\| {re.escape(method)} \| .*\(n=2\) \|$", md, re.M), method
    differences = {line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if " − " in line}
    for ssd in ("self_distill:same", "self_distill:independent"):
        for base in ("vanilla", "student_teacher", "denoise:clean", "denoise:noise2noise", "joint"):
            assert f"{ssd} − {base}" in differences
    for beyond in ("online_distill:same − self_distill:same", "online_distill:same − vanilla"):
        assert beyond in differences
    assert "self_distill:same:gen3 − self_distill:same" in differences
    assert "self_distill:same:gen2 − vanilla" not in differences  # only the contrasts the README names
    assert (sweep / "wall_time.txt").read_text().startswith("cpu_fidelity: sweep finished in")


# --------------------------------------------------------------------------- intervals, bootstrap, verdicts

T975_DF2 = 4.302652729749752  # Student t, 97.5% quantile, 2 degrees of freedom (tables: 4.3027)


def test_t_quantile_matches_tables() -> None:
    for df, expected in (
        (1, 12.7062047),
        (2, 4.30265273),
        (4, 2.77644511),
        (9, 2.26215716),
        (29, 2.04522964),
    ):
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)
    assert t_quantile(0.025, 4) == pytest.approx(-2.77644511, abs=1e-6)


def test_stat_ci_and_paired_t_golden_values() -> None:
    low, high = Stat.of([0.5, 0.6, 0.7]).ci
    half = T975_DF2 * 0.1 / np.sqrt(3)
    assert (low, high) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    assert Stat.of([0.4]).ci is None  # one seed: no interval
    d = paired_t([1.0, 2.0, 3.0])  # mean 2, sd 1
    assert (d.mean, d.low, d.high, d.n) == (
        2.0,
        pytest.approx(2 - T975_DF2 / np.sqrt(3)),
        pytest.approx(2 + T975_DF2 / np.sqrt(3)),
        3,
    )
    assert paired_t([1.5]) is None


def _naive_bootstrap(per_seed: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """The textbook two-level resampling, indices materialised (slow; a reference): seeds with
    replacement, and one resample of the test images shared by every seed."""
    n_seeds, n_images = per_seed.shape
    out = np.empty(reps)
    for r in range(reps):
        seeds, images = rng.integers(0, n_seeds, n_seeds), rng.integers(0, n_images, n_images)
        out[r] = per_seed[seeds][:, images].mean()
    return out * 100


def _per_seed(rng: np.random.Generator, n_images: int, probs: tuple[float, ...]) -> np.ndarray:
    """seeds x images differences in {-1, 0, 1}: per seed, correct_A ~ Bernoulli(p), correct_B ~ B(0.5)."""
    return np.stack(
        [
            (rng.random(n_images) < p).astype(np.int8) - (rng.random(n_images) < 0.5).astype(np.int8)
            for p in probs
        ]
    )


def test_hierarchical_bootstrap_is_reproducible_and_matches_the_textbook_resampling() -> None:
    per_seed = _per_seed(np.random.default_rng(3), 500, (0.55, 0.6, 0.52))
    a = hierarchical_bootstrap(per_seed, reps=2000, seed=7)
    assert a == hierarchical_bootstrap(per_seed, reps=2000, seed=7)  # seeded: identical
    assert a != hierarchical_bootstrap(per_seed, reps=2000, seed=8)
    assert a.mean == pytest.approx(per_seed.mean() * 100)
    ref = np.percentile(_naive_bootstrap(per_seed, 1500, np.random.default_rng(0)), [2.5, 97.5])
    assert a.low == pytest.approx(ref[0], abs=0.6) and a.high == pytest.approx(ref[1], abs=0.6)
    same = np.zeros((3, 300), dtype=np.int8)  # identical predictions: no difference, no spread
    z = hierarchical_bootstrap(same, reps=200)
    assert (z.mean, z.low, z.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same test images"):
        hierarchical_bootstrap([np.zeros(3), np.zeros(4)])


def test_hierarchical_bootstrap_resamples_the_test_images_once_for_every_seed() -> None:
    """Seeds that agree image by image add no information about the test set: the interval must be the
    image-level bootstrap of one seed (scipy's), not sqrt(seeds) narrower as when every seed resamples its
    images on its own (the earlier code: about 4.3 points wide here instead of 8.6)."""
    one = _per_seed(np.random.default_rng(5), 1000, (0.6,))[0]
    copies = np.stack([one] * 4)
    shared = hierarchical_bootstrap(copies, reps=4000, seed=1)
    image_level = scipy_stats.bootstrap(
        (one * 100.0,), np.mean, n_resamples=4000, method="percentile", random_state=2
    ).confidence_interval
    width = image_level.high - image_level.low
    assert shared.high - shared.low == pytest.approx(width, rel=0.08)
    assert shared.low == pytest.approx(image_level.low, abs=0.35) and shared.high == pytest.approx(
        image_level.high, abs=0.35
    )


def _ci(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high, 3, "paired t")


def test_verdict_rules() -> None:
    assert within_margin(_ci(-0.6, 0.6), 1.0) == "yes"
    assert within_margin(_ci(-5.7, -1.9), 1.0) == "no"
    assert within_margin(_ci(1.2, 3.0), 1.0) == "no"
    assert within_margin(_ci(-0.6, 1.4), 1.0) == "undecided"
    assert within_margin(None, 1.0) == "undecided"
    assert at_least(_ci(2.0, 6.5), 2.0) == "yes"
    assert at_least(_ci(0.5, 1.99), 2.0) == "no"
    assert at_least(_ci(1.8, 6.5), 2.0) == "undecided"
    assert (
        sign(_ci(0.1, 2)) == "higher"
        and sign(_ci(-2, -0.1)) == "lower"
        and sign(_ci(-1, 1)) == "within noise"
    )


# --------------------------------------------------------------------------- a sweep that can decide

N_IMAGES = 400  # accuracies below are multiples of 1/400, so the per-image files reproduce them exactly
DECIDE = {  # method -> (strategy, accuracy in % at sigma=0.2 for seeds 0, 1, 2)
    "vanilla": ("vanilla", (50.0, 51.5, 51.0)),
    "student_teacher": ("student_teacher", (55.0, 56.0, 54.5)),
    "self_distill:same": ("self_distill", (55.25, 55.75, 54.5)),
    "self_distill:independent": ("self_distill", (50.5, 52.0, 51.5)),
    "denoise:clean": ("denoise", (54.0, 57.0, 53.0)),
    "denoise_frozen:clean": ("denoise", (40.0, 41.0, 42.0)),
}


def _correct(acc: float, seed: int) -> np.ndarray:
    out = np.zeros(N_IMAGES, dtype=bool)
    out[: round(acc / 100 * N_IMAGES)] = True
    return np.random.default_rng(seed).permutation(out)


def _stages(method: str, seed: int) -> dict:
    main = {"strategy": method.split(":")[0], "key": f"m-{method}-{seed}", "fit_seconds": 60.0, "epochs": 5}
    if method == "vanilla":
        return {"main": {**main, "fit_seconds": 50.0}}  # 10 s per vanilla epoch
    if method == "self_distill:same":  # a cached teacher counts its original fit time
        teacher = {"strategy": "vanilla", "key": f"v{seed}", "fit_seconds": 50.0, "source": "cache"}
        return {"teacher": teacher, "main": main}
    if method == "student_teacher":  # an old cache entry without a fit time: a lower bound
        return {"teacher": {"strategy": "clean", "key": "c", "source": "cache"}, "main": main}
    if method == "denoise:clean":  # one clean classifier twice in the tree counts once
        clf = {"strategy": "clean", "key": "c", "fit_seconds": 40.0, "source": "train"}
        den = {"strategy": "denoiser", "key": "d", "fit_seconds": 30.0, "requires": {"classifier": clf}}
        return {"denoiser": den, "classifier": clf, "main": {**main, "fit_seconds": 20.0}}
    return {"main": main}


@pytest.fixture
def decide_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "decide"
    for method, (strategy, accs) in DECIDE.items():
        for seed, acc in enumerate(accs):
            correct = _correct(acc, 100 * seed + len(method))
            if method == "student_teacher":
                correct = [correct[0::2], correct[1::2]]  # DDP: two ranks, union = the test set
            if method == "denoise_frozen:clean" and seed == 2:
                correct = None  # no per-image file: that contrast gets no bootstrap
            fake_run(
                root,
                strategy,
                0.2,
                seed,
                acc / 100,
                method=method,
                stages=_stages(method, seed),
                correct=correct,
            )
    fake_run(root, "vanilla", 0.5, 0, 0.40, method="vanilla")  # one seed only at sigma=0.5
    fake_run(root, "self_distill", 0.5, 0, 0.45, method="self_distill:same")
    return root


def _differences(out: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(out / "differences.csv") as handle:
        return {(r["a"], r["b"], r["level"]): r for r in csv.DictReader(handle)}


def test_report_decides_per_sigma(decide_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main([str(decide_sweep), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    # grouping by method: the two self_distill variants share a strategy and a config, never a row
    assert "| self_distill:same | 55.17 ± 0.63 (n=3) | 45.00 (n=1) |" in md
    assert "| self_distill:independent | 51.33 ± 0.76 (n=3) | — |" in md
    # the setting and n are stated, the per-image files give the test-image count
    setting = next(line for line in md.splitlines() if line.startswith("_Setting: "))
    assert "synthetic" in setting and "400 test images" in setting and "resnet20 · 200 epochs" in setting
    assert setting.endswith("seeds 0, 1, 2; n = seeds per cell._") and md.count(setting) >= 3  # every table
    diffs = _differences(out)
    d = diffs[("self_distill:same", "vanilla", "0.2")]  # per-seed +5.25, +4.25, +3.5
    mean, sd = np.mean([5.25, 4.25, 3.5]), np.std([5.25, 4.25, 3.5], ddof=1)
    assert float(d["mean"]) == pytest.approx(mean)
    assert float(d["t_low"]) == pytest.approx(mean - T975_DF2 * sd / np.sqrt(3))
    assert float(d["t_high"]) == pytest.approx(mean + T975_DF2 * sd / np.sqrt(3))
    assert float(d["boot_mean"]) == pytest.approx(mean)  # the per-image files reproduce the accuracies
    assert float(d["boot_low"]) < mean < float(d["boot_high"])
    assert d["verdict"] == "yes" and d["seeds"] == "0 1 2"
    verdicts = {(r["a"], r["b"]): r["verdict"] for r in diffs.values() if r["level"] == "0.2"}
    assert verdicts == {
        ("self_distill:same", "vanilla"): "yes",
        ("self_distill:same", "student_teacher"): "yes",
        ("self_distill:same", "denoise:clean"): "within noise",
        ("self_distill:same", "denoise_frozen:clean"): "higher",
        ("self_distill:independent", "vanilla"): "no",
        ("self_distill:independent", "student_teacher"): "no",
        ("self_distill:independent", "denoise:clean"): "within noise",
        ("self_distill:independent", "denoise_frozen:clean"): "higher",
    }
    assert diffs[("self_distill:same", "denoise_frozen:clean", "0.2")]["boot_low"] == ""  # a file is missing
    assert diffs[("self_distill:same", "student_teacher", "0.2")]["boot_low"] != ""  # DDP rank files joined
    assert "σ=0.2: self_distill:same within 1 pt of student_teacher: yes (" in md
    assert "within noise" in next(
        line for line in md.splitlines() if "same within 1 pt of student_teacher" in line
    )
    assert "σ=0.2: self_distill:independent ≥ vanilla + 2 pts: no (" in md
    assert "σ=0.5: self_distill:same ≥ vanilla + 2 pts: undecided at this n (" in md  # one seed
    # compute: stage fit seconds, cached teachers included, in vanilla epochs (10 s) at the same sigma
    assert "| self_distill:same | 55.17 | 0.63 |" in md
    row = next(line for line in md.splitlines() if line.startswith("| self_distill:same | 55.17 | 0.63 |"))
    assert row.endswith("| 3 | 110 | 11.0 |")
    assert next(line for line in md.splitlines() if line.startswith("| denoise:clean | 54.67 |")).endswith(
        "| 90 | 9.0 |"
    )
    assert next(line for line in md.splitlines() if line.startswith("| student_teacher | 55.17 |")).endswith(
        "| ≥60 | ≥6.0 |"
    )
    for png in ("accuracy_vs_noise.png", "robustness_curves.png", "differences.png"):
        assert (out / png).stat().st_size > 1000


def test_report_flags_compare_thresholds_and_bootstrap_verdicts(decide_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "r1"
    args = [str(decide_sweep), "--out", str(out), "--compare", "self_distill:*", "student_teacher"]
    assert main([*args, "--equiv-margin", "0.5", "--bootstrap-reps", "300"]) == 0
    diffs = _differences(out)
    assert {(a, b) for a, b, _ in diffs} == {
        ("self_distill:same", "student_teacher"),
        ("self_distill:independent", "student_teacher"),
    }
    assert (
        diffs[("self_distill:same", "student_teacher", "0.2")]["verdict"] == "undecided"
    )  # CI ±0.62 vs ±0.5
    md = (out / "report.md").read_text()
    assert "within 0.5 pt of student_teacher: undecided at this n" in md and "300 resamples" in md
    out2 = tmp_path / "r2"
    assert main([*args, "--verdict-ci", "bootstrap", "--bootstrap-reps", "300", "--out", str(out2)]) == 0
    line = next(x for x in (out2 / "report.md").read_text().splitlines() if "same within 1 pt" in x)
    assert "95% CI by hierarchical bootstrap" in line
    boot = _differences(out2)[("self_distill:same", "student_teacher", "0.2")]
    assert boot["boot_low"] == diffs[("self_distill:same", "student_teacher", "0.2")]["boot_low"]  # seeded


def test_report_rejects_a_bad_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = fake_run(tmp_path / "s", "vanilla", 0.1, 0, 0.5)
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "method": 3}))
    assert main([str(tmp_path / "s"), "--out", str(tmp_path / "r")]) == 2
    assert "method=3" in capsys.readouterr().err
