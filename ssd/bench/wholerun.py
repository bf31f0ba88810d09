"""Whole runs: ``python -m ssd.run`` against the plain loop doing the same work, as whole processes.

The step benchmark times training steps; a user waits for a whole run. This times, in
interleaved pairs (so load drift on a shared machine hits both alike):

* ``plain``: a process that loads the same CIFAR arrays and runs ``ssd.plainloop.train_and_test``
  (no framework: one ``for`` loop) with ssd's recipe (``ssd.parity.SSD_RECIPE``) — the same
  epochs, batches, schedule, noise and two-level test (noisy and clean);
* ``ssd``: ``python -m ssd.run experiment=cpu_quick strategy=vanilla data.val_size=0
  noise.eval_levels=[]`` (the same work), with a fresh stage cache so it trains.

Each process is timed in wall time and in CPU time (``RUSAGE_CHILDREN``). Both write what
they measured inside, so the report splits each run into start-up (interpreter, imports,
config), data, training steps, the rest of training (epoch ends: checkpoints, logging, loop
bookkeeping) and test + shutdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssd.results import read_json

PHASES = ("startup", "data", "train_steps", "train_other", "test_and_exit")
#: environment variable with the wall-clock time a plain process was launched (its start-up is measured inside)
LAUNCHED = "SSD_WHOLERUN_LAUNCHED"


def _timed(cmd: list[str], env: Mapping[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child and its children, result) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, cpu, proc


def plain_run(
    sigma: float, epochs: int, seed: int, data_root: str, variant: str, out: Path, env: Mapping
) -> dict:
    """One plain-loop process; its phases from what it measured inside."""
    cmd = [sys.executable, "-m", "ssd.bench.wholerun", "--plain", f"--sigma={sigma}", f"--epochs={epochs}"]
    cmd += [f"--seed={seed}", f"--data-root={data_root}", f"--variant={variant}", f"--out={out}"]
    wall, cpu, _ = _timed(cmd, {**env, LAUNCHED: repr(time.time())})
    inside = json.loads(out.read_text())
    phases = {
        "startup": inside["startup_s"],
        "data": inside["data_s"],
        "train_steps": inside["train_seconds"],
        "train_other": 0.0,
    }
    phases["test_and_exit"] = wall - sum(phases.values())
    return {"wall_s": wall, "cpu_s": cpu, "test_acc": inside["test_acc"], "phases": phases}


def ssd_run(
    sigma: float, epochs: int, seed: int, variant: str, work: Path, env: Mapping, extra: Sequence[str]
) -> dict:
    """One ``python -m ssd.run`` process; its phases from its results.json.

    ``data`` is the pipeline's time outside fit and test (datamodule, network, saving weights);
    without a ``test_seconds`` in the stage record it also holds the test.
    """
    run_dir = work / "ssd-run"
    cmd = [sys.executable, "-m", "ssd.run", "experiment=cpu_quick", "strategy=vanilla", "data.val_size=0"]
    cmd += [f"noise.sigma={sigma}", "noise.eval_levels=[]", f"seed={seed}", f"trainer.max_epochs={epochs}"]
    cmd += [
        f"data.variant={variant}",
        "trainer.enable_progress_bar=false",
        f"paths.cache_dir={work / 'cache'}",
    ]
    cmd += [f"paths.log_dir={work / 'outputs'}", f"hydra.run.dir={run_dir}", *extra]
    wall, cpu, _ = _timed(cmd, env)
    results = read_json(run_dir / "results.json") or {}
    main = results["stages"]["main"]
    steps_s = main["train_samples_per_epoch"] * main["epochs"] / main["train_images_per_s"]
    pipeline = results["wall_time_s"]
    phases = {
        "startup": wall - pipeline,  # interpreter, imports, config, validation, run folder; and exit
        "data": pipeline - main["fit_seconds"] - main.get("test_seconds", 0.0),
        "train_steps": steps_s,
        "train_other": main["fit_seconds"] - steps_s,
    }
    phases["test_and_exit"] = wall - sum(phases.values())
    return {"wall_s": wall, "cpu_s": cpu, "test_acc": results["test_acc"], "phases": phases}


def run_pairs(settings: argparse.Namespace) -> dict[str, Any]:
    """``pairs`` interleaved (plain, ssd) pairs; the order alternates so neither always goes first."""
    env = {**os.environ, "OMP_NUM_THREADS": str(settings.threads), "WANDB_MODE": "disabled"}
    env["SSD_DATA_DIR"] = str(Path(settings.data_root).resolve())
    runs: dict[str, list[dict]] = {"plain": [], "ssd": []}
    with tempfile.TemporaryDirectory(prefix="ssd-wholerun-") as tmp:
        for pair in range(settings.pairs):
            order = ("plain", "ssd") if pair % 2 == 0 else ("ssd", "plain")
            for kind in order:
                work = Path(tmp) / f"{kind}-{pair}"
                work.mkdir()
                if kind == "plain":
                    args = (
                        settings.sigma,
                        settings.epochs,
                        settings.seed,
                        settings.data_root,
                        settings.variant,
                    )
                    result = plain_run(*args, work / "plain.json", env)
                else:
                    result = ssd_run(
                        settings.sigma,
                        settings.epochs,
                        settings.seed,
                        settings.variant,
                        work,
                        env,
                        settings.extra,
                    )
                runs[kind].append(result)
                print(
                    f"pair {pair} {kind:<5} wall {result['wall_s']:7.1f} s  CPU {result['cpu_s']:7.1f} s",
                    flush=True,
                )
    ratios = {
        clock: statistics.median(s[clock] / p[clock] for s, p in zip(runs["ssd"], runs["plain"], strict=True))
        for clock in ("wall_s", "cpu_s")
    }
    return {"settings": vars(settings), "runs": runs, "ssd_vs_plain": ratios, "load": os.getloadavg()[0]}


def format_whole_runs(report: Mapping[str, Any]) -> str:
    """Median seconds per phase for each kind, and the paired ratios."""
    s = report["settings"]
    lines = [
        f"whole runs: cpu_quick vanilla, sigma {s['sigma']:g}, {s['epochs']} epochs, CIFAR-10 {s['variant']}, "
        f"{s['threads']} threads, {s['pairs']} interleaved pairs (medians, seconds)",
        f"{'':<6}" + "".join(f"{p:>14}" for p in (*PHASES, "wall", "CPU")) + f"{'test acc':>10}",
    ]
    for kind, runs in report["runs"].items():
        phase = [statistics.median(r["phases"][p] for r in runs) for p in PHASES]
        wall, cpu = (statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s"))
        acc = statistics.median(r["test_acc"] for r in runs)
        lines.append(f"{kind:<6}" + "".join(f"{v:14.1f}" for v in (*phase, wall, cpu)) + f"{100 * acc:9.2f}%")
    r = report["ssd_vs_plain"]
    lines.append(f"ssd / plain: wall {r['wall_s']:.3f}, CPU {r['cpu_s']:.3f} (median of per-pair ratios)")
    return "\n".join(lines)


def _plain_main(args: argparse.Namespace) -> None:
    """The plain process itself: load arrays, train and test with ssd's recipe, write what it measured."""
    from ssd.parity import SSD_RECIPE
    from ssd.plainloop import Recipe, load_arrays, train_and_test

    startup = time.time() - float(os.environ[LAUNCHED])  # interpreter and imports
    t0 = time.perf_counter()
    arrays = load_arrays(args.data_root, args.variant)
    data_s = time.perf_counter() - t0
    recipe = Recipe(**{"sigma": args.sigma, "epochs": args.epochs, **SSD_RECIPE})
    result = train_and_test(recipe, arrays, args.seed)
    result.pop("net")
    out = {**result, "startup_s": startup, "data_s": data_s, "recipe": dataclasses.asdict(recipe)}
    Path(args.out).write_text(json.dumps(out))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ssd.bench --whole-run", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--sigma", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=os.environ.get("SSD_DATA_DIR", "../shared/data"))
    p.add_argument("--variant", default="subset")
    p.add_argument("--extra", nargs="*", default=[], help="more overrides of the ssd run")
    p.add_argument("--out", default=None)
    p.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # the plain process itself
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.plain:
        _plain_main(args)
        return None
    report = run_pairs(args)
    print(format_whole_runs(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        print(f"written {args.out}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
