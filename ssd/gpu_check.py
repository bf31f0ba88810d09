"""A GPU check in one command and one JSON file: eval-noise speed, ``ssd.bench``, three short runs.

Why: a researcher who is lent a GPU for a few minutes should learn, in one go, whether ssd
uses it well (images/s of the raw loop and of every strategy), whether the fixed
evaluation noise is fast and identical to the CPU's there, and what a short ResNet-18
run of vanilla, student_teacher and self_distill reaches on full CIFAR-10 at sigma 0.2.

``experiments/gpu_check.sh`` calls this; ``--device cpu --smoke`` runs the same steps
with tiny settings (synthetic data) to check the plumbing on a CPU. Every step runs under
one time budget (8 minutes by default); a step that fails or runs out of time is recorded
as such and the others still run. The JSON is rewritten after every step, so even a
killed check leaves what it measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ssd.results import read_json, write_json_atomic

STRATEGIES = ("vanilla", "student_teacher", "self_distill")
#: seconds kept back for the later steps when an earlier one is given its timeout
_RESERVE = {"bench": 200.0, "runs": 0.0}
_LOG_TAIL = 3000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="experiments/gpu_check.sh",
        description="Eval-noise speed, ssd.bench (raw loop vs every strategy) and short runs of "
        + ", ".join(STRATEGIES)
        + ", into one JSON file.",
    )
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="default %(default)s")
    p.add_argument(
        "--smoke", action="store_true", help="tiny settings and synthetic data (checks the plumbing)"
    )
    p.add_argument("--out", default=None, help="JSON path (default outputs/gpu_check/gpu_check-<time>.json)")
    p.add_argument("--budget-s", type=float, default=480.0, help="time for all steps (default %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per stage (default 4; smoke 1)")
    p.add_argument("--sigma", type=float, default=0.2)
    p.add_argument("--model", default="resnet18", help="conf/model option (default %(default)s)")
    p.add_argument("--skip", default="", help="comma list of steps to skip: noise, bench, runs")
    p.add_argument("--keep", default=None, help="keep the run folders and bench output in this folder")
    p.add_argument("overrides", nargs="*", help="Hydra overrides added to every run (KEY=VALUE)")
    args = p.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}
    bad = args.skip - {"noise", "bench", "runs"}
    if bad:
        p.error(f"--skip={','.join(sorted(bad))} is not allowed: steps are noise, bench, runs")
    if args.epochs is None:
        args.epochs = 1 if args.smoke else 4
    if args.epochs < 1:
        p.error(f"--epochs={args.epochs} is not allowed: must be >= 1")
    if args.budget_s <= 0:
        p.error(f"--budget-s={args.budget_s} is not allowed: must be > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device=cuda is not allowed here: torch sees no CUDA device (use --device cpu)")
    return args


# ---------------------------------------------------------------------- step: evaluation noise


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_eval_noise(device: torch.device, images: int, size: int, batch: int) -> dict[str, Any]:
    """Images/s of ``fixed_noisy`` (gaussian and poisson) on ``device`` for ``images`` of 3 x size x size."""
    from ssd.noise import GaussianNoise, PoissonNoise, fixed_noisy

    x = torch.rand(batch, 3, size, size, device=device, generator=torch.Generator(device).manual_seed(0))
    out: dict[str, Any] = {"images": images, "image_shape": [3, size, size], "batch": batch}
    for noise in (GaussianNoise(0.2, clip=False, sigma_max=None), PoissonNoise(10.0, clip=False)):
        fixed_noisy(noise, x[:2], torch.arange(2, device=device), 0)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for first in range(0, images, batch):
            fixed_noisy(noise, x, torch.arange(first, first + batch, device=device), 0)
        _sync(device)
        seconds = time.perf_counter() - start
        out[noise.name] = {"seconds": seconds, "images_per_s": images / seconds}
    return out


def cpu_vs_device(device: torch.device) -> dict[str, Any]:
    """Largest difference between the fixed noise computed on the CPU and on ``device``."""
    from ssd.noise import GaussianNoise, PoissonGaussianNoise, PoissonNoise, fixed_noisy

    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    idx = torch.arange(64) * 13
    diffs = {}
    for noise in (
        GaussianNoise(0.2, clip=False, sigma_max=None),
        GaussianNoise(0.1, sigma_max=0.3, clip=False),
        PoissonNoise(30.0, clip=False),
        PoissonGaussianNoise(50.0, 0.03, clip=False),
    ):
        cpu = fixed_noisy(noise, x, idx, 9)
        dev = fixed_noisy(noise, x.to(device), idx.to(device), 9).cpu()
        diffs[noise.describe()] = float((cpu - dev).abs().max())
    return {"max_abs_diff": diffs, "same_within_1e-5": all(d <= 1e-5 for d in diffs.values())}


def step_noise(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    images, batch = (200, 50) if args.smoke else (10_000, 250)
    result = {
        "224px": time_eval_noise(device, images, 224, batch),
        "32px": time_eval_noise(device, images, 32, batch),
    }
    if device.type != "cpu":
        result["cpu_vs_device"] = cpu_vs_device(device)
    return result


# ---------------------------------------------------------------------- steps in subprocesses


def _run(cmd: list[str], timeout: float, log: Path) -> dict[str, Any]:
    """Run ``cmd`` with its output in ``log``; the exit status, seconds and (on failure) the log's tail."""
    start = time.perf_counter()
    with log.open("w") as handle:
        try:
            proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, check=False)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    record: dict[str, Any] = {"command": " ".join(cmd), "seconds": round(time.perf_counter() - start, 1)}
    if code is None:
        record["error"] = f"timed out after {timeout:.0f} s (the check's time budget)"
    elif code != 0:
        record["error"] = f"exit status {code}"
    if "error" in record:
        record["log_tail"] = log.read_text(errors="replace")[-_LOG_TAIL:]
    return record


def bench_command(args: argparse.Namespace, out: Path) -> list[str]:
    """``ssd.bench`` for every strategy and the raw loop; uses only flags ``ssd.bench --help`` lists."""
    cmd = [
        sys.executable,
        "-m",
        "ssd.bench",
        "--model",
        args.model,
        "--device",
        args.device,
        "--out",
        str(out),
    ]
    if args.smoke:
        cmd += ["--batch-size", "8", "--warmup", "1", "--min-steps", "1", "--max-steps", "1"]
        cmd += ["--repeats", "1", "--min-repeats", "1", "--min-window-s", "0"]
    else:
        cmd += ["--repeats", "3", "--min-repeats", "2", "--budget-s", "15"]
    return cmd


def summarize_bench(report: dict[str, Any]) -> dict[str, Any]:
    """The rows' images/s and ratios, from an ``ssd.bench`` JSON (the full report is kept beside it)."""
    rows = {}
    for row in report.get("rows", []):
        name = row.get("name")
        if name is None:
            continue
        if row.get("error"):
            rows[name] = {"error": row["error"]}
        else:
            rows[name] = {k: row.get(k) for k in ("images_per_s", "step_ms", "vs_raw", "vs_vanilla")}
    return {"rows": rows, "resolved": report.get("resolved"), "machine": report.get("machine")}


def step_bench(args: argparse.Namespace, work: Path, timeout: float) -> dict[str, Any]:
    out = work / "bench.json"
    record = _run(bench_command(args, out), timeout, work / "bench.log")
    report = read_json(out)
    if report is not None:
        record.update(summarize_bench(report))
        record["report"] = report
    elif "error" not in record:
        record["error"] = f"ssd.bench wrote no {out.name}"
    return record


def run_overrides(args: argparse.Namespace, strategy: str, work: Path) -> list[str]:
    """Hydra overrides of one short run (full CIFAR-10, or synthetic data with --smoke)."""
    common = [
        f"strategy={strategy}",
        f"model={args.model}",
        f"noise.sigma={args.sigma}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "seed=0",
        f"paths.cache_dir={work / 'cache'}",
        f"hydra.run.dir={work / 'runs' / strategy}",
    ]
    if args.smoke:
        data = ["data=synthetic", "data.train=64", "data.test=32", "data.val_size=0", "data.batch_size=16"]
        data += ["noise.eval_levels=[0,0.2]"]
    else:
        data = ["data=cifar10", "data.variant=full", "data.val_size=0"]
    return [*common, *data, *args.overrides]


def summarize_run(results: dict[str, Any]) -> dict[str, Any]:
    """What the check reports from a run's results.json: accuracies, images/s of every stage, time."""
    stages = {
        role: {k: stage.get(k) for k in ("source", "train_images_per_s", "epochs", "fit_seconds")}
        for role, stage in (results.get("stages") or {}).items()
        if isinstance(stage, dict)
    }
    keys = ("status", "test_acc", "clean_acc", "robustness", "train_images_per_s", "wall_time_s", "hardware")
    return {**{k: results.get(k) for k in keys}, "stages": stages}


def step_runs(args: argparse.Namespace, work: Path, deadline: float) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for strategy in STRATEGIES:
        left = deadline - time.monotonic()
        if left < 10:
            runs[strategy] = {"error": "skipped: the check's time budget is spent"}
            continue
        cmd = [sys.executable, "-m", "ssd.run", *run_overrides(args, strategy, work)]
        record = _run(cmd, left, work / f"run-{strategy}.log")
        results = read_json(work / "runs" / strategy / "results.json")
        if results is not None:
            record.update(summarize_run(results))
        elif "error" not in record:
            record["error"] = "the run wrote no results.json"
        runs[strategy] = record
    return runs


# ---------------------------------------------------------------------- the check


def default_out() -> Path:
    log_dir = Path(os.environ.get("SSD_LOG_DIR", "outputs"))
    return log_dir / "gpu_check" / f"gpu_check-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out) if args.out else default_out()
    start, deadline = time.monotonic(), time.monotonic() + args.budget_s
    from ssd.hardware import configure_backends, describe_hardware

    configure_backends("gpu" if args.device == "cuda" else "cpu")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "settings": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "hardware": describe_hardware("auto", "gpu" if args.device == "cuda" else "cpu"),
        "data_dir": os.environ.get("SSD_DATA_DIR"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ssd-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if "noise" not in args.skip:
            print("gpu_check: timing the fixed evaluation noise", flush=True)
            try:
                report["eval_noise"] = step_noise(args)
            except Exception as err:  # noqa: BLE001 - recorded; the other steps still run
                report["eval_noise"] = {"error": f"{type(err).__name__}: {err}"}
            write_json_atomic(out, report)
        if "bench" not in args.skip:
            print("gpu_check: ssd.bench (raw loop vs every strategy)", flush=True)
            timeout = max(
                10.0, deadline - time.monotonic() - (0 if "runs" in args.skip else _RESERVE["bench"])
            )
            report["bench"] = step_bench(args, work, timeout)
            write_json_atomic(out, report)
        if "runs" not in args.skip:
            print(
                f"gpu_check: short runs of {', '.join(STRATEGIES)} ({args.epochs} epoch(s) per stage)",
                flush=True,
            )
            report["runs"] = step_runs(args, work, deadline)
    finally:
        report["wall_s"] = round(time.monotonic() - start, 1)
        report["errors"] = [
            name
            for name, step in (
                ("eval_noise", report.get("eval_noise")),
                ("bench", report.get("bench")),
                *((f"runs.{s}", r) for s, r in (report.get("runs") or {}).items()),
            )
            if isinstance(step, dict) and "error" in step
        ]
        write_json_atomic(out, report)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu_check: {report['wall_s']:.0f} s, {len(report['errors'])} failed step(s); written {out}")
    _print_summary(report)
    return 1 if report["errors"] else 0


def _print_summary(report: dict[str, Any]) -> None:
    noise = report.get("eval_noise") or {}
    for size in ("224px", "32px"):
        if isinstance(noise.get(size), dict):
            gauss = noise[size].get("gaussian", {})
            print(f"  eval noise {size}: {gauss.get('images_per_s', float('nan')):,.0f} images/s (gaussian)")
    for name, row in ((report.get("bench") or {}).get("rows") or {}).items():
        if "images_per_s" in row:
            print(f"  bench {name:<18} {row['images_per_s']:9.1f} img/s")
    for strategy, run in (report.get("runs") or {}).items():
        acc, ips = run.get("test_acc"), run.get("train_images_per_s")
        if acc is not None:
            print(f"  run {strategy:<16} test_acc {acc:.4f}  train {ips or float('nan'):.1f} img/s")
        else:
            print(f"  run {strategy:<16} {run.get('error')}")


if __name__ == "__main__":
    raise SystemExit(main())
