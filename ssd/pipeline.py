"""Multi-stage runs: plan the stages a job needs, fetch or train each, publish it, test the job.

A strategy class declares the roles it needs (``requires``: e.g. ``("teacher",)``); its
config holds one section per role (``strategy.teacher``) naming the strategy that trains
that stage, an optional ``ckpt`` to use instead, and optional ``overrides`` of the run
config for that stage. What a stage *is* (config, key, cache entry name, seed, weights)
lives in ``ssd.stages``; this module only orchestrates. Every stage, the job's own main
stage included, goes the same way: look it up (given checkpoint, this run folder, the
stage cache), else train it, then publish it to the cache. So a ``clean`` classifier is
trained once for every sigma and every strategy that needs one, and a ``vanilla`` run's
network is the ``self_distill`` teacher of the same seed.

Under DDP only rank 0 decides (cache hit, train, or given checkpoint) and writes the
decision to ``<stage>/plan.json``; the other ranks follow it, so they never disagree.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import signal
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from torch import nn

from ssd import parts
from ssd.cache import StageCache, describe_entry, sha256_file
from ssd.callbacks import POSITION, training_position
from ssd.config.errors import ConfigError
from ssd.console import announce_stage, report_stage, stage_label
from ssd.data.protocol import DataFacts, NoisyDataModule
from ssd.data.splits import check_batch_fits, check_limits_met
from ssd.dist import is_launch_rank_zero, wait_for_decision
from ssd.fit import build_module, fit_stage
from ssd.hardware import configure_backends, describe_hardware
from ssd.interrupt import exit_code_of
from ssd.parts import strategy_class
from ssd.results import (
    package_versions,
    read_complete_results,
    read_json,
    runtime_facts,
    write_atomic,
    write_json_atomic,
)
from ssd.seeding import stage_seed
from ssd.stages import (
    NET_FILE,
    data_fingerprint,
    entry_name,
    load_stage_weights,
    method_label,
    partial_schedule,
    source_state,
    stage_config,
    stage_key,
    stage_weights,
)

log = logging.getLogger(__name__)

# image-quality test metrics (denoising strategies) copied into results.json when a stage reports them
IMAGE_METRICS = ("psnr", "ssim", "psnr_noisy")
# what a stage record keeps of a cached stage's training (cost accounting in reports)
# and its training curves and W&B run (shown and linked by a job that reuses it: ssd.loggers.replay_history)
CACHED_FIELDS = (
    "metrics",
    "val_acc",
    "created",
    "fit_seconds",
    "epochs",
    "train_images_per_s",
    "stage_seed",
    "history",
    "wandb",
)


def provenance(role: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Where a stage's weights came from, for its loggers: the source (train, run, cache, ckpt), the cache
    entry, when it was trained, and the W&B run that trained it (its url online, else its id)."""
    run = record.get("wandb") or {}
    return {
        "role": role,
        "source": record.get("source"),
        "entry": record.get("name"),
        "created": record.get("created"),
        "wandb": run.get("url") or run.get("id"),
    }


def launch_id() -> str:
    """Identifies this launch of a run across its DDP ranks (children inherit the variable)."""
    if "SSD_LAUNCH_ID" not in os.environ:
        slurm = os.environ.get("SLURM_JOB_ID")
        elastic = os.environ.get("TORCHELASTIC_RUN_ID")  # torchrun: unique with --standalone or --rdzv-id
        if slurm:
            os.environ["SSD_LAUNCH_ID"] = f"slurm-{slurm}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
        elif elastic:
            where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
            os.environ["SSD_LAUNCH_ID"] = (
                f"torchrun-{elastic}-{where}-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
            )
        else:
            os.environ["SSD_LAUNCH_ID"] = uuid.uuid4().hex
    return os.environ["SSD_LAUNCH_ID"]


def load_data(cfg: Mapping[str, Any]) -> tuple[NoisyDataModule, DataFacts]:
    """The run's datamodule (``ssd.parts``), its data read, and the facts networks are built from."""
    try:
        datamodule = parts.build_datamodule(cfg)
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (InstantiationException, ValueError, FileNotFoundError) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        raise ConfigError(f"data ({cfg['data']['_target_']}): {cause}") from err
    return datamodule, DataFacts.of(datamodule)


def count_stages(cfg: Mapping[str, Any]) -> int:
    """How many stages a job has (itself and, recursively, what it requires): for "[i/n]" announcements."""
    section = cfg["strategy"]
    cls = strategy_class(section)
    roles = [cls.role_config(section, role) for role in cls.requires]
    return 1 + sum(1 if r.get("ckpt") else count_stages(stage_config(cfg, r)) for r in roles)


class Pipeline:
    """Runs one job: its required stages (recursively), then its main stage."""

    def __init__(self, cfg: Mapping[str, Any], run_dir: Path, group: str):
        self.cfg = cfg
        self.run_dir = run_dir
        self.group = group
        paths = cfg["paths"]
        self.cache = StageCache(Path(paths["cache_dir"]) / "stages", lock=paths["cache_lock"])
        self.cache_mode = str(cfg["cache"])  # off | read | readwrite (validated)
        self.launch = launch_id()
        self.datamodule: NoisyDataModule | None = None
        self.facts: DataFacts | None = None
        self.fingerprint: dict[str, Any] = {}
        self.total_stages = 1
        self.stage_number = 0

    # ------------------------------------------------------------------ stages
    def required(
        self, cfg: Mapping[str, Any], base_dir: Path
    ) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
        """Obtain every stage ``cfg``'s strategy requires: (frozen nets by role, records by role)."""
        frozen: dict[str, nn.Module] = {}
        records: dict[str, dict[str, Any]] = {}
        section = cfg["strategy"]
        cls = strategy_class(section)
        for role in cls.requires:
            role_cfg = cls.role_config(section, role)
            sub_cfg = stage_config(cfg, role_cfg)
            module, records[role] = self.stage(role, sub_cfg, base_dir / role, ckpt=role_cfg.get("ckpt"))
            records[role]["stage_seed"] = None if role_cfg.get("ckpt") else stage_seed(sub_cfg)
            frozen[role] = module.net
        return frozen, records

    def _decide(self, plan_path: Path, decide: Any) -> dict[str, Any]:
        """Rank 0 runs ``decide()`` and shares the plan; other ranks wait for it."""
        if is_launch_rank_zero():
            plan = {**decide(), "launch": self.launch}
            write_json_atomic(plan_path, plan)
            return plan
        # minutes for a decision; as long as a stage lock may take while rank 0 says it waits for one
        return wait_for_decision(plan_path, self.launch, pending_timeout_s=self.cache.lock_timeout_s)

    def _publish(
        self, name: str | None, key: str, cfg: Mapping[str, Any], stage_dir: Path, result: dict
    ) -> None:
        """Rank 0: the stage's weights and record into its folder, then (best effort) into the cache.

        ``name`` None: a stage that is not cached (started from ``init_from``, or trains nothing).
        """
        for file, state in result.pop("_weights").items():
            write_atomic(stage_dir / file, functools.partial(torch.save, state))  # never a half-written file
        write_json_atomic(stage_dir / "stage.json", {"key": key, **result})
        if name is None or self.cache_mode != "readwrite":
            return
        partial = partial_schedule(cfg, result.get("epochs"))
        if partial is not None:
            log.warning("stage cache: %s not published: a partial schedule (%s)", name, partial)
            return
        meta = {"key": key, "name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": cfg}
        meta["source"] = source_state()  # the git commit that trained it, and whether its tree was dirty
        meta.update({k: result.get(k) for k in CACHED_FIELDS if k in result})
        self.cache.try_publish(name, stage_dir / NET_FILE, meta)

    def stage(
        self, role: str, cfg: Mapping[str, Any], stage_dir: Path, ckpt: str | None = None, main: bool = False
    ) -> tuple[Any, dict[str, Any]]:
        """A stage's trained module and its record: from ``ckpt``, this run's folder, the cache, or training.

        The main stage is always tested here, at the job's own noise and evaluation settings, even when
        its weights come from the cache; a required stage found ready is not re-tested.
        """
        sub_frozen, sub_records = self.required(cfg, stage_dir if not main else self.run_dir)
        sub_seeds = {role: rec["stage_seed"] for role, rec in sub_records.items()}
        key = stage_key(cfg, {r: rec["key"] for r, rec in sub_records.items()}, self.fingerprint)
        name = entry_name(cfg, key)
        cacheable = not (main and (cfg["init_from"] or cfg["eval_only"]))
        cacheable = cacheable and strategy_class(cfg["strategy"]).trains
        record: dict[str, Any] = {
            "role": role,
            "strategy": cfg["strategy"]["name"],
            "key": key,
            "name": name,
            "requires": sub_records,
        }
        stage_dir.mkdir(parents=True, exist_ok=True)
        writes = cacheable and self.cache_mode == "readwrite"
        lock = self.cache.lock(name) if is_launch_rank_zero() and writes else None

        def decide() -> dict[str, Any]:
            if ckpt:
                return {"source": "ckpt", "net": str(Path(ckpt).resolve())}
            done = read_json(stage_dir / "stage.json")
            if done and done.get("key") == key and (stage_dir / NET_FILE).exists():
                return {"source": "run", "net": str(stage_dir / NET_FILE)}
            if cacheable and self.cache_mode == "read":
                hit = self.cache.lookup(name, repair=False)  # a read-only use writes nothing to the cache
            elif lock is None:
                return {"source": "train"}
            else:
                # tells the other ranks rank 0 is alive while it may wait for another job training this stage
                write_json_atomic(stage_dir / "plan.json", {"launch": self.launch, "pending": f"lock {name}"})
                self.cache.acquire(lock, name)  # held until this stage is published (or the job fails)
                hit = self.cache.lookup(name)
            if hit is not None:
                if lock is not None:
                    self.cache.release(lock, name)
                log.info("stage cache: reusing %s as the %s: %s", name, role, describe_entry(hit))
                return {
                    "source": "cache",
                    "net": hit["net"],
                    "cached": {k: hit.get(k) for k in CACHED_FIELDS},
                }
            return {"source": "train"}

        try:
            plan = self._decide(stage_dir / "plan.json", decide)
            self.stage_number += 1
            needs = ", ".join(f"{r} {rec['strategy']}" for r, rec in sub_records.items())
            label = stage_label(self.stage_number, self.total_stages, role, cfg["strategy"]["name"])
            announce_stage(
                self.stage_number,
                self.total_stages,
                role,
                cfg["strategy"]["name"],
                plan["source"],
                key,
                teacher=needs or None,
            )
            weights = None if plan["source"] == "train" else Path(plan["net"])
            if weights is None or main:
                cached = plan.get("cached") or {}
                origins = {r: provenance(r, rec) for r, rec in sub_records.items()}
                if plan["source"] == "cache":
                    origins[role] = provenance(role, {**cached, "source": "cache", "name": name})
                module, result = fit_stage(
                    cfg,
                    role,
                    stage_dir,
                    self.datamodule,
                    self.facts,
                    sub_frozen,
                    self.group,
                    weights,
                    label,
                    sub_seeds,
                    history=cached.get("history") or (),
                    provenance=origins,
                )
                record.update(result)
            else:
                module = build_module(cfg, self.facts, sub_frozen, sub_seeds)
                load_stage_weights(module, weights)
            if plan["source"] == "train" and is_launch_rank_zero():
                result["_weights"] = stage_weights(module)
                self._publish(name if cacheable else None, key, cfg, stage_dir, result)
                weights = stage_dir / NET_FILE
        finally:
            if lock is not None:
                self.cache.release(lock, name)
        if plan["source"] != "train":  # what the stage's own training measured, and (required stages) tested
            if plan["source"] == "run":
                known = read_json(stage_dir / "stage.json") or {}
            else:
                known = plan.get("cached") or {}
            # the main stage keeps its fresh test metrics; its training cost is the original training's
            fields = (
                ("fit_seconds", "epochs", "train_images_per_s", "created", "val_acc", "history")
                if main
                else CACHED_FIELDS
            )
            record.update({f: known[f] for f in fields if f in known})
            metrics = record.get("metrics") or {}
            record.setdefault("test_acc", metrics.get("test/acc"))
            record.setdefault("clean_acc", metrics.get("test/acc_clean"))
            # validation is measured while training: the original training's
            record["val_acc"] = (known.get("metrics") or {}).get("val/acc")
        weights = weights if weights is not None else stage_dir / NET_FILE
        record.update(
            {
                "source": plan["source"],
                "net": str(weights),
                "sha256": sha256_file(weights) if weights.exists() else None,
            }
        )
        if is_launch_rank_zero():
            report_stage(label, plan["source"], record)  # [1/2] teacher vanilla: test acc 0.8123, ...
        return module, record

    # ------------------------------------------------------------------ the job
    def run(self) -> dict[str, Any]:
        """Run the whole pipeline; returns the results (``run_pipeline`` writes them)."""
        cfg = self.cfg
        start = time.perf_counter()
        trainer_cfg = cfg["trainer"]
        configure_backends(str(trainer_cfg["accelerator"]), deterministic=bool(cfg["deterministic"]))
        self.datamodule, self.facts = load_data(cfg)
        self.fingerprint = data_fingerprint(self.datamodule)
        # a batch larger than the training set fails here, before training
        splits = self.fingerprint["splits"]
        check_batch_fits(
            int(self.datamodule.batch_size),
            splits["train"] + splits["val"],
            splits["val"],
            "the data's train + val",
        )
        check_limits_met(self.datamodule, splits)
        self.total_stages = count_stages(cfg)
        job_type = "student" if "teacher" in strategy_class(cfg["strategy"]).requires else "main"
        module, main = self.stage(job_type, cfg, self.run_dir / "main", main=True)
        records = main.pop("requires")
        noise = module.noise
        return {
            "status": "complete",
            "strategy": cfg["strategy"]["name"],
            "method": method_label(cfg),
            "run_dir": str(self.run_dir),
            "seed": cfg["seed"],
            "stage_seed": main.get("stage_seed"),
            "noise": {
                "name": noise.name,
                "level_name": noise.level_name,
                "level": noise.level,
                "describe": noise.describe(),
            },
            "data": {
                "source": str(self.datamodule.source),
                "num_classes": int(self.facts.num_classes),
                **self.fingerprint,
            },
            "test_acc": main["test_acc"],
            "clean_acc": main["clean_acc"],
            "val_acc": main.get("val_acc"),  # last epoch, at the training noise (null without a val split)
            "robustness": main["robustness"],
            "per_class": main.pop("per_class", None),  # test accuracy by class, confusion matrices
            **{k: main["metrics"][f"test/{k}"] for k in IMAGE_METRICS if f"test/{k}" in main["metrics"]},
            "wall_time_s": time.perf_counter() - start,
            "train_images_per_s": main["train_images_per_s"],
            "threads": torch.get_num_threads(),  # bit-exact reproduction holds at equal thread counts
            "hardware": describe_hardware(str(trainer_cfg["precision"]), str(trainer_cfg["accelerator"])),
            "stages": {**records, "main": main},
            "config": cfg,
            "versions": package_versions(),
        }


def run_pipeline(cfg: Mapping[str, Any], run_dir: Path, group: str) -> dict[str, Any]:
    """Run a job into ``run_dir`` unless it is already complete there; write results.json atomically.

    A job that does not finish records why (never over a complete result), so a report lists it:
    ``status: interrupted`` for a signal or Ctrl-C, ``status: failed`` with the error otherwise,
    both with the stage, epoch and step it stopped in.
    """
    done = read_complete_results(run_dir)
    if done is not None and cfg["resume"]:
        log.info("%s is complete; skipping (resume=false to rerun)", run_dir)
        return done
    POSITION.clear()  # where training is, kept by FiniteLossGuard (a sweep runs many jobs in one process)
    try:
        results = Pipeline(cfg, run_dir, group).run()
    except BaseException as err:
        if is_launch_rank_zero() and read_complete_results(run_dir) is None:
            try:
                write_json_atomic(run_dir / "results.json", unfinished_results(cfg, run_dir, err))
            except OSError as full:  # e.g. the disk that failed the run is full: the run's own error matters
                log.error("could not record status %s in %s: %s", "failed", run_dir / "results.json", full)
        raise
    if is_launch_rank_zero():
        results = {**results, **{k: v for k, v in runtime_facts().items() if k not in results}}
        write_json_atomic(run_dir / "results.json", results)
    return results


def unfinished_results(cfg: Mapping[str, Any], run_dir: Path, err: BaseException) -> dict[str, Any]:
    """``results.json`` of a job that stopped early: why, and where (stage, phase, epoch, step)."""
    code = exit_code_of(err)
    if code is None and isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt):
        code = exit_code_of(err.__context__)  # Lightning turns Ctrl-C into sys.exit(1)
    where = training_position()
    stage_dir = where.pop("stage_dir", None)
    if stage_dir is not None:
        stage = os.path.relpath(stage_dir, run_dir)
        where["stage"] = stage_dir if stage.startswith("..") else stage
    record: dict[str, Any] = {"status": "interrupted" if code else "failed"}
    if code:
        record.update(
            {
                "error": f"interrupted by {signal.Signals(code - 128).name}",
                "exit_code": code,
                "resume": "run the same command into this folder: it resumes from the last checkpoint",
            }
        )
    else:
        record["error"] = f"{type(err).__name__}: {err}"
        if isinstance(err, ConfigError):  # found only once the data was there (e.g. no data)
            record["exit_code"] = 2
    return {**record, **where, **runtime_facts(), "config": copy.deepcopy(dict(cfg))}
