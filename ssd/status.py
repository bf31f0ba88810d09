"""``ssd-status SWEEP_DIR`` (= ``python -m ssd.status``): where a sweep stands, while it runs.

One line per job folder: ``done`` with its test accuracy, ``running`` with its stage and epoch (from
the stage's ``metrics.csv``, else the epoch lines of ``run.log``), ``failed`` / ``interrupted`` with
the reason from ``results.json``, then the jobs not started yet (the sweep's job count comes from
``multirun.yaml``) and an ETA from the finished jobs' mean wall time. Reads files only: no torch,
nothing written, safe on a sweep that is running.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: a job folder with no write for this long and no results.json is shown as stalled, not running
STALE_SECONDS = 3600
EPOCH_LINE = re.compile(r"\] - (\[\d+/\d+\] \S+ \S+): epoch (\d+)/(\d+)")


@dataclass
class Job:
    """One job folder of the sweep, as its files show it."""

    name: str
    state: str  # done | running | stalled | failed | interrupted
    detail: str
    started: float
    ended: float | None
    last_write: float


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_job_folder(path: Path) -> bool:
    return path.is_dir() and ((path / ".hydra").is_dir() or (path / "run.json").is_file())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _max_epochs(job_dir: Path) -> int | None:
    match = re.search(r"^  max_epochs: (\d+)$", _text(job_dir / "config.resolved.yaml"), re.MULTILINE)
    return int(match.group(1)) if match else None


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def epochs_done(metrics_csv: Path) -> int:
    """Epochs a stage has finished: rows that carry an epoch-level value (``*_epoch``, ``val/*``)."""
    done = -1
    try:
        with metrics_csv.open(newline="") as handle:
            for row in csv.DictReader(handle):
                ends_epoch = any(
                    (k.endswith("_epoch") or k.startswith("val/")) and v for k, v in row.items() if k
                )
                if ends_epoch and row.get("epoch"):
                    done = max(done, int(float(row["epoch"])))
    except (OSError, ValueError):
        return 0
    return done + 1


def progress(job_dir: Path) -> str:
    """``teacher: epoch 5/15`` for the stage being trained (the latest ``metrics.csv``), else the last
    epoch line of ``run.log``; ``starting`` when neither says anything yet."""
    stages = sorted(job_dir.glob("*/metrics.csv"), key=_mtime)
    if stages:
        latest = stages[-1]
        total = _max_epochs(job_dir)
        epoch = min(epochs_done(latest) + 1, total or math.inf)
        return f"{latest.parent.name}: epoch {epoch}/{total if total else '?'}"
    lines = EPOCH_LINE.findall(_text(job_dir / "run.log"))
    if lines:
        label, epoch, total = lines[-1]
        return f"{label}: epoch {epoch}/{total} done"
    return "starting"


def read_job(job_dir: Path, now: float) -> Job:
    started = _mtime(job_dir / ".hydra" / "config.yaml") or _mtime(job_dir)
    writes = [
        _mtime(p) for p in (job_dir / "run.log", job_dir / "results.json", *job_dir.glob("*/metrics.csv"))
    ]
    last_write = max([started, *writes])
    results = read_json(job_dir / "results.json") or {}
    status = results.get("status")
    ended = _mtime(job_dir / "results.json") if status else None
    if status == "complete":
        acc = results.get("test_acc")
        detail = "test acc " + (f"{acc:.4f}" if isinstance(acc, int | float) else "?")
        return Job(job_dir.name, "done", detail, started, ended, last_write)
    if status in ("failed", "interrupted"):
        where = ", ".join(f"{k} {results[k]}" for k in ("stage", "epoch") if results.get(k) is not None)
        error = str(results.get("error") or "no reason recorded").splitlines()[0]
        return Job(job_dir.name, status, error + (f" ({where})" if where else ""), started, ended, last_write)
    idle = now - last_write
    state = "stalled" if idle > STALE_SECONDS else "running"
    detail = f"{progress(job_dir)} (last write {duration(idle)} ago)"
    return Job(job_dir.name, state, detail, started, None, last_write)


def planned_jobs(sweep_dir: Path) -> int | None:
    """How many jobs the sweep's command line asks for (the product of its comma lists and sweep
    functions, as Hydra's basic sweeper expands them); None where ``multirun.yaml`` does not say."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(sweep_dir / "multirun.yaml")
        parser = OverridesParser.create()
        params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        task = list(OmegaConf.select(cfg, "hydra.overrides.task") or [])
        by_key = {}  # the command line replaces a key the config's sweeper.params also sweeps (Hydra's rule)
        for override in parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + task):
            by_key[override.key_or_group] = override
        total = 1
        for override in by_key.values():
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:  # noqa: BLE001 - an optional count: a sweep this cannot read is shown without it
        return None


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta(jobs: list[Job], pending: int, now: float) -> str:
    """The time left, from the finished jobs' mean wall time, with the running jobs in parallel."""
    times = [j.ended - j.started for j in jobs if j.state == "done" and j.ended]
    running = [j for j in jobs if j.state == "running"]
    if not running and not pending:
        return "nothing left to run"
    if not times:
        return "ETA unknown until a job finishes"
    mean = sum(times) / len(times)
    left = sum(max(mean - (now - j.started), 0.0) for j in running) + pending * mean
    parallel = max(len(running), 1)
    return (
        f"ETA ~{duration(left / parallel)} "
        f"(a job takes {duration(mean)} on average over {len(times)} done; {parallel} in parallel)"
    )


def status_lines(sweep_dir: Path, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    jobs = [read_job(p, now) for p in sorted(sweep_dir.iterdir()) if is_job_folder(p)]
    planned = planned_jobs(sweep_dir)
    total = max(planned or 0, len(jobs))
    pending = total - len(jobs)
    counts = {
        s: sum(j.state == s for j in jobs) for s in ("done", "running", "stalled", "failed", "interrupted")
    }
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n or s in ("done", "running", "failed"))
    lines = [f"{sweep_dir}: {summary}, {pending} not started ({total} jobs)"]
    width = max((len(j.name) for j in jobs), default=0)
    order = {"running": 0, "stalled": 1, "failed": 2, "interrupted": 3, "done": 4}
    for job in sorted(jobs, key=lambda j: (order[j.state], j.name)):
        lines.append(f"  {job.state:<11} {job.name:<{width}}  {job.detail}")
    lines.append(eta(jobs, pending, now))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ssd-status",
        description="Where a sweep stands: done, running (stage and epoch), failed (why), not started, ETA.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder, e.g. outputs/multiruns/<sweep_name>")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sweep_dir: Path = args.sweep_dir
    if not sweep_dir.is_dir():
        print(
            f"ssd-status: {sweep_dir} is not a folder; give a sweep folder (outputs/multiruns/<name>)",
            file=sys.stderr,
        )
        return 2
    if not (sweep_dir / "multirun.yaml").is_file() and not any(is_job_folder(p) for p in sweep_dir.iterdir()):
        print(
            f"ssd-status: {sweep_dir} holds no sweep (no multirun.yaml, no job folders); "
            "give a sweep folder (outputs/multiruns/<name>)",
            file=sys.stderr,
        )
        return 2
    print("\n".join(status_lines(sweep_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
