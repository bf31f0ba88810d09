"""A run folder's identity: which config ran in it, so a resume or a skip never mixes two configs.

At the start of a run rank 0 writes ``<run_dir>/run.json``: a digest of the resolved config
without the launch-only keys (devices, logger, paths, ...). Re-running into a folder that
holds another config is a ConfigError naming the keys that differ; ``resume=false`` starts
over instead, after moving the earlier run aside and marking its result ``superseded``.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import OmegaConf

from ssd.config.errors import ConfigError
from ssd.results import json_digest, read_json, write_json_atomic

log = logging.getLogger("ssd")

#: the exit status of a config error (``ssd.run``)
EXIT_CONFIG_ERROR = 2
#: bytes of a sweep job's folder name; file systems refuse a path component over 255
JOB_FOLDER_MAX = 200


def job_folder_name(override_dirname: str, limit: int = JOB_FOLDER_MAX) -> str:
    """A sweep job's folder (``hydra.sweep.subdir``): its overrides as Hydra joins them, cut to ``limit``
    bytes plus a hash of the whole where they are longer, so a job with many overrides still gets a
    folder, a distinct one, and the same one when the sweep is re-run to resume."""
    raw = override_dirname.encode()
    if len(raw) <= limit:
        return override_dirname
    digest = json_digest(override_dirname, length=12)
    head = raw[: limit - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


#: keys that say how a run is launched or logged, not what it computes (dotted; a section drops whole)
LAUNCH_ONLY = (
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.accelerator",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "logger",
    "paths",
    "resume",
    "sweep_name",
    "hydra",
    "tags",
    "cache",
)
#: what ssd writes into a run folder besides the stage folders (logs and .hydra/ stay where they are)
RUN_FILES = ("run.json", "config.resolved.yaml")
SUPERSEDED_PREFIX = "superseded-"


def without_keys(container: Mapping[str, Any], dotted_keys: Any) -> dict[str, Any]:
    """A deep copy of ``container`` less each dotted key (a key names its whole subtree; absent ones are skipped)."""
    kept = copy.deepcopy(dict(container))
    for dotted in dotted_keys:
        *parents, last = dotted.split(".")
        node: Any = kept
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return kept


def run_identity(container: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved run config without the launch-only keys."""
    return without_keys(container, LAUNCH_ONLY)


def config_digest(identity: Mapping[str, Any]) -> str:
    return json_digest(identity)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if isinstance(node, Mapping) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: <old> there, <new> now`` for every leaf that differs."""
    a, b = flatten(old), flatten(new)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            there = "(absent)" if va is missing else repr(va)[:60]
            now = "(absent)" if vb is missing else repr(vb)[:60]
            out.append(f"{key}: {there} there, {now} now")
    return out


def previous_identity(run_dir: Path) -> dict[str, Any] | None:
    """The identity of the run already in ``run_dir``: its run.json, else its config.resolved.yaml."""
    recorded = read_json(run_dir / "run.json")
    if recorded and isinstance(recorded.get("config"), dict):
        return recorded["config"]
    resolved = run_dir / "config.resolved.yaml"
    if resolved.is_file():
        try:
            container = OmegaConf.to_container(OmegaConf.load(resolved), resolve=True)
        except Exception:  # noqa: BLE001 - an unreadable file is "another config" too
            return {"<unreadable config.resolved.yaml>": True}
        return run_identity(container) if isinstance(container, dict) else None
    return None


def stage_folders(run_dir: Path) -> list[Path]:
    """Folders an earlier run left in ``run_dir`` (stages), not Hydra's ``.hydra/`` or older superseded runs."""
    if not run_dir.is_dir():
        return []
    return [
        p
        for p in sorted(run_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and not p.name.startswith(SUPERSEDED_PREFIX)
    ]


def holds_a_run(run_dir: Path) -> bool:
    """Whether an earlier run left anything in ``run_dir`` (a result, its config, a stage)."""
    files = (*RUN_FILES, "results.json")
    return any((run_dir / f).exists() for f in files) or bool(stage_folders(run_dir))


def supersede(run_dir: Path) -> Path | None:
    """Move an earlier run's config and stage folders (checkpoints, weights) aside into
    ``superseded-<time>/`` and mark its ``results.json`` ``superseded`` (in place and there)."""
    if not holds_a_run(run_dir):
        return None
    aside = run_dir / f"{SUPERSEDED_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while aside.exists():
        n += 1
        aside = run_dir / f"{SUPERSEDED_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    aside.mkdir(parents=True)
    for path in [*(run_dir / f for f in RUN_FILES), *stage_folders(run_dir)]:
        if path.exists():
            os.replace(path, aside / path.name)
    old = read_json(run_dir / "results.json")
    if old is not None:
        marked = {
            **old,
            "status": "superseded",
            "superseded_status": old.get("status"),
            "superseded_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "moved_to": str(aside),
        }
        write_json_atomic(aside / "results.json", marked)
        write_json_atomic(run_dir / "results.json", marked)  # until this run writes its own
    log.info("resume=false: the earlier run in %s was moved to %s (status superseded)", run_dir, aside)
    return aside


def prepare_run_dir(container: Mapping[str, Any], run_dir: Path) -> None:
    """Rank 0, before the run writes anything: make sure ``run_dir`` holds this config or nothing.

    A different config there is a ConfigError naming the keys that differ; ``resume=false``
    moves the earlier run aside first. Then ``run.json`` records this config.
    """
    identity = run_identity(container)
    digest = config_digest(identity)
    if not container["resume"]:
        supersede(run_dir)
    else:
        previous = previous_identity(run_dir)
        if previous is not None and config_digest(previous) != digest:
            diff = differences(previous, identity)
            shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
            raise ConfigError(
                f"hydra.run.dir={str(run_dir)!r} is not allowed: it holds a run of another config "
                f"({shown}), and resuming or skipping would mix the two. Start over in a new folder "
                "(another hydra.run.dir), or add resume=false to move the earlier run aside "
                "(its results.json is marked superseded)"
            )
    recorded = read_json(run_dir / "run.json") or {}
    write_json_atomic(
        run_dir / "run.json",
        {
            "digest": digest,
            "created": recorded.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
            "launches": int(recorded.get("launches", 0)) + 1,
            "launch_only_keys": list(LAUNCH_ONLY),
            "config": identity,
        },
    )


# --------------------------------------------------------------------------- sweeps


class SweepJob(NamedTuple):
    """How one job of a sweep ended: ``status`` complete, failed (``reason`` says why) or skipped."""

    number: int
    overrides: tuple[str, ...]
    status: str
    reason: str
    run_dir: Path


#: the jobs of the sweep running in this process, as they finish (``ssd.run.hydra_main`` adds, ``ssd.run.SweepCheck`` sums up)
SWEEP_JOBS: list[SweepJob] = []


def varying(jobs: list[list[str]] | list[tuple[str, ...]]) -> list[str]:
    """Each job's overrides that not every job shares (what tells the jobs apart), joined."""
    common = set.intersection(*(set(job) for job in jobs)) if jobs else set()
    return [" ".join(o for o in job if o not in common) or " ".join(job) or "no overrides" for job in jobs]


def sweep_summary(sweep_dir: Path, jobs: list[SweepJob]) -> int:
    """Print what became of each job of a sweep; return the sweep's exit status: 0 when none failed,
    2 when every failure was a config error, else 1."""
    counts = {s: sum(1 for job in jobs if job.status == s) for s in ("complete", "failed", "skipped")}
    jobs = sorted(jobs)
    lines = [f"ssd: sweep finished: {len(jobs)} job(s): " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    for job, shown in zip(jobs, varying([j.overrides for j in jobs]), strict=True):
        first, *more = job.reason.splitlines() or [""]
        why = f": {first}" + (" (more in its results.json)" if more else "") if first else ""
        lines.append(f"  #{job.number} {job.status} ({shown}){why}\n      {job.run_dir}")
    lines.append(f"runs in {sweep_dir}; next: ssd-report {sweep_dir}")
    print("\n".join(lines), file=sys.stderr)
    failed = [job.reason for job in jobs if job.status == "failed"]
    if not failed:
        return 0
    return EXIT_CONFIG_ERROR if all(r.startswith("ConfigError") for r in failed) else 1
