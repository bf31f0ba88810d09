"""``python -m ssd.bench``: build the rows, measure them, print and write the report."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ssd.bench import wholerun
from ssd.bench.rawloop import RawLoop
from ssd.bench.rows import LightningRow, compose_run_cfg, discover_strategies, row_config
from ssd.bench.settings import (
    CPU_DENOISER,
    ROW_VARIANTS,
    BenchSettings,
    describe_device,
    load_average,
    log,
    resolve_device,
    resolve_threads,
    synchronizer,
)
from ssd.bench.table import check_targets, format_table, summarise
from ssd.bench.timing import RowResult, StepWindow, run_rounds
from ssd.pipeline import load_data


def profile_row(
    row: Any, settings: BenchSettings, device: torch.device, sync: Callable[[], None], out_dir: Path
) -> str:
    """``torch.profiler`` over ``profile_steps`` timed steps of one row: the top ops table (and a Chrome trace)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prof = profile(activities=activities, record_shapes=False)
    window = StepWindow(
        settings.warmup + 1, settings.profile_steps, settings.profile_steps, 0.0, sync, prof.start, prof.stop
    )
    row.run(window)
    out_dir.mkdir(parents=True, exist_ok=True)
    trace = out_dir / f"profile-{row.name}.json"
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25)
    return f"profile of {row.name} over {settings.profile_steps} steps (Chrome trace: {trace})\n{table}"


def quiet_lightning() -> None:
    """The bench fits many times: keep Lightning's per-fit banners and hints out of the table."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # frozen stages, on purpose


def run_benchmark(settings: BenchSettings) -> dict[str, Any]:
    """Build every row, measure them in rounds, return the report (also what is written as JSON)."""
    quiet_lightning()
    load_before = load_average()
    previous = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(settings.threads))
    try:
        report = _measure(settings)
    finally:
        torch.set_num_threads(previous)
    report["machine"]["load_before_after"] = None if load_before is None else [load_before, load_average()]
    return report


def _measure(settings: BenchSettings) -> dict[str, Any]:
    device = resolve_device(settings.device)
    sync = synchronizer(device)
    names = (
        settings.strategies if settings.strategies is not None else [*discover_strategies(), *ROW_VARIANTS]
    )
    if "vanilla" not in names:
        names = ["vanilla", *names]  # the reference of every ratio
    base_cfg = compose_run_cfg("vanilla", settings, device)
    datamodule, data_info = load_data(base_cfg)
    results: dict[str, RowResult] = {"raw": RowResult("raw", "raw", {})}
    rows: list[Any] = [RawLoop(base_cfg, datamodule, data_info, device)]
    with tempfile.TemporaryDirectory(prefix="ssd-bench-") as tmp:
        for name in names:
            results[name] = RowResult(name, "lightning", {})
            try:
                cfg, results[name].variant = (
                    (base_cfg, []) if name == "vanilla" else row_config(name, settings, device)
                )
                row = LightningRow(name, cfg, datamodule, data_info, Path(tmp))
            except Exception as err:  # noqa: BLE001 - e.g. a strategy whose code is not written yet
                results[name].error = f"{type(err).__name__}: {err}"
                log.warning("skipping %s: %s", name, results[name].error)
                continue
            results[name].frozen = row.frozen_stages
            rows.append(row)
        wall = run_rounds(rows, results, settings, sync)
        out = (
            Path(settings.out)
            if settings.out
            else Path(base_cfg["paths"]["log_dir"]) / "bench" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
        )
        profiles = [
            profile_row(row, settings, device, sync, out.parent)
            for row in rows
            if row.name in settings.profile
        ]
    table_rows = summarise(results, settings.batch_size, cpu_clock=device.type == "cpu")
    return {
        "settings": asdict(settings),
        "resolved": {
            "device": str(device),
            "precision": base_cfg["trainer"]["precision"],
            "channels_last": bool(base_cfg["trainer"]["channels_last"]),
            "threads": torch.get_num_threads(),
            "data": base_cfg["data"]["_target_"],
            "noise": base_cfg["noise"],
        },
        "machine": {
            "device": describe_device(device),
            "host": platform.node(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
        "rows": table_rows,
        "targets": check_targets(table_rows),
        "wall_s": wall,
        "profiles": profiles,
        "out": str(out),
    }


def parse_args(argv: Sequence[str] | None = None) -> BenchSettings:
    d = BenchSettings()
    p = argparse.ArgumentParser(
        prog="python -m ssd.bench",
        description="Train images/s of every strategy (real Lightning path) against a hand-written PyTorch loop.",
        epilog="Positional KEY=VALUE arguments are Hydra overrides of the run config, e.g. noise.sigma=0.2 data=cifar10.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the run config (applied last)")
    p.add_argument("--model", default=d.model, help="conf/model option (default %(default)s)")
    p.add_argument(
        "--denoiser",
        default=d.denoiser,
        help=f"conf/denoiser option of the denoise/joint rows; auto: {CPU_DENOISER} on a CPU, the run default on a GPU",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--precision", default=d.precision, help="auto (bf16 where supported) or a Lightning precision"
    )
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--channels-last", default=d.channels_last, choices=("auto", "true", "false"))
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the trained networks (trainer.compile)"
    )
    p.add_argument(
        "--threads",
        default=d.threads,
        help="CPU threads; auto: torch's default, 1 when the CPU is already fully loaded",
    )
    p.add_argument(
        "--strategies",
        default=None,
        help="comma list of strategies and named variants (default: every conf/strategy config, then "
        f"{', '.join(ROW_VARIANTS)})",
    )
    p.add_argument("--image-size", type=int, default=d.image_size, help="synthetic image size")
    p.add_argument("--num-classes", type=int, default=d.num_classes, help="synthetic classes")
    p.add_argument(
        "--warmup", type=int, default=d.warmup, help="untimed steps per run (one more in the first round)"
    )
    p.add_argument("--min-steps", type=int, default=d.min_steps, help="timed steps per run, at least")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="timed steps per run, at most")
    p.add_argument(
        "--min-window-s",
        type=float,
        default=d.min_window_s,
        help="a timed window lasts at least this (unless max-steps)",
    )
    p.add_argument("--repeats", type=int, default=d.repeats, help="rounds at most")
    p.add_argument(
        "--min-repeats", type=int, default=d.min_repeats, help="rounds every row gets whatever the budget"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=d.budget_s,
        help="no further rounds for a row once they would pass this",
    )
    p.add_argument("--data-noise-batches", type=int, default=d.data_noise_batches)
    p.add_argument(
        "--progress-bar", action="store_true", help="keep Lightning's progress bar on (as in training runs)"
    )
    p.add_argument(
        "--profile", default="", help="comma list of rows to profile with torch.profiler after measuring"
    )
    p.add_argument("--profile-steps", type=int, default=d.profile_steps)
    p.add_argument("--out", default=None, help="JSON path (default outputs/bench/bench-<time>.json)")
    p.add_argument(
        "--whole-run",
        action="store_true",
        help="time whole cpu_quick runs against the plain loop instead; "
        "its options: python -m ssd.bench.wholerun --help",
    )
    a = p.parse_args(argv)
    bad = [o for o in a.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must be KEY=VALUE, got {bad}")
    if (
        a.warmup < 1
        or a.min_steps < 1
        or a.max_steps < a.min_steps
        or a.min_repeats < 1
        or a.repeats < a.min_repeats
    ):
        p.error("need --warmup >= 1, 1 <= --min-steps <= --max-steps and 1 <= --min-repeats <= --repeats")
    return BenchSettings(
        model=a.model,
        denoiser=a.denoiser,
        batch_size=a.batch_size,
        precision=a.precision,
        device=a.device,
        channels_last=a.channels_last,
        compile=a.compile,
        threads=a.threads,
        strategies=[s for s in a.strategies.split(",") if s] if a.strategies else None,
        image_size=a.image_size,
        num_classes=a.num_classes,
        warmup=a.warmup,
        min_steps=a.min_steps,
        max_steps=a.max_steps,
        min_window_s=a.min_window_s,
        repeats=a.repeats,
        min_repeats=a.min_repeats,
        budget_s=a.budget_s,
        data_noise_batches=a.data_noise_batches,
        progress_bar=a.progress_bar,
        profile=[s for s in a.profile.split(",") if s],
        profile_steps=a.profile_steps,
        out=a.out,
        overrides=list(a.overrides),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--whole-run" in argv:  # whole processes, not steps: its own options
        return wholerun.main([a for a in argv if a != "--whole-run"])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = parse_args(argv)
    report = run_benchmark(settings)
    out = Path(report["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    for text in report["profiles"]:
        print(text)
    print(format_table(report))
    print(f"written {out}")
    return report
