"""Multi-stage runs: train (or fetch) the stages a strategy requires, then the strategy.

A strategy class declares the roles it needs (``requires``: e.g. ``("teacher",)``); its
config holds one section per role (``strategy.teacher``) naming the strategy that trains
that stage, an optional ``ckpt`` to use instead, and optional ``overrides`` of the run
config for that stage. Stages are looked up in the shared ``StageCache`` by a key over
everything that determines them, so a sweep over lambda or taps trains each teacher once.

Under DDP only rank 0 decides (cache hit, train, or given checkpoint) and writes the
decision to ``<stage>/plan.json``; the other ranks follow it, so they never disagree.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ssd.cache import StageCache, sha256_file
from ssd.config import ConfigError
from ssd.dist import is_launch_rank_zero, wait_for_json
from ssd.paths import conf_dir
from ssd.results import package_versions, read_complete_results, read_json, write_json_atomic
from ssd.train import build_module, strategy_class, train_stage

log = logging.getLogger(__name__)

# config keys that decide what a trained stage is (launch details like devices do not)
KEY_TRAINER_FIELDS = ("max_epochs", "precision", "gradient_clip_val", "limit_train_batches")
KEY_DATA_IGNORED = (
    "eval_batch_size",
    "channels_last",
    "cache_dir",
    "root",
    "download",
    "num_workers",
    "limit_test",
)
# image-quality test metrics (denoising strategies) copied into results.json when a stage reports them
IMAGE_METRICS = ("psnr", "ssim", "psnr_noisy")


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


def data_info(datamodule: L.LightningDataModule) -> dict[str, Any]:
    return {
        "num_classes": int(datamodule.num_classes),
        "mean": [float(v) for v in datamodule.mean],
        "std": [float(v) for v in datamodule.std],
        "image_size": int(datamodule.image_size),
    }


def build_datamodule(cfg: Mapping[str, Any]) -> tuple[L.LightningDataModule, dict[str, Any]]:
    """Instantiate ``cfg.data`` and read the facts models need (classes, mean/std)."""
    try:
        datamodule = instantiate(cfg["data"])
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (InstantiationException, ValueError, FileNotFoundError) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        raise ConfigError(f"data={cfg['data'].get('name')}: {cause}") from err
    return datamodule, data_info(datamodule)


def stage_config(run_cfg: Mapping[str, Any], role_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The full config of a required stage: the run's, with the stage's strategy and overrides."""
    strategy_yaml = conf_dir() / "strategy" / f"{role_cfg['strategy']}.yaml"
    if not strategy_yaml.exists():
        raise FileNotFoundError(f"stage strategy {role_cfg['strategy']!r} has no config {strategy_yaml}")
    base = OmegaConf.create({k: v for k, v in run_cfg.items() if k != "strategy"})
    merged = OmegaConf.merge(
        base, {"strategy": OmegaConf.load(strategy_yaml)}, role_cfg.get("overrides") or {}
    )
    return OmegaConf.to_container(merged, resolve=True)


def stage_key(cfg: Mapping[str, Any], required_keys: Mapping[str, str]) -> str:
    """Hash of everything that determines a trained stage."""
    cls = strategy_class(cfg)
    data = {k: v for k, v in cfg["data"].items() if k not in KEY_DATA_IGNORED}
    noise = {k: v for k, v in cfg["noise"].items() if k != "eval_levels"} if cls.trains_on_noise else None
    versions = package_versions()
    payload = {
        "data": data,
        "noise": noise,
        "model": cfg["model"],
        "strategy": cfg["strategy"],
        "optim": cfg["optim"],
        "trainer": {k: cfg["trainer"].get(k) for k in KEY_TRAINER_FIELDS},
        "seed": cfg["seed"],
        "requires": dict(required_keys),
        "versions": {k: versions[k] for k in ("ssd", "torch", "lightning")},
    }
    payload.update({section: cfg[section] for section in cls.config_sections})  # e.g. the denoiser network
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_net_weights(module_net: nn.Module, path: str | Path) -> None:
    """Load a stage's network from ``net.pt`` (a state_dict) or from a Lightning ``.ckpt``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a Lightning checkpoint of a whole strategy module
        state = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    module_net.load_state_dict(state)


class Pipeline:
    """Runs one job: its required stages (recursively), then its main stage."""

    def __init__(self, cfg: Mapping[str, Any], run_dir: Path, group: str):
        self.cfg = cfg
        self.run_dir = run_dir
        self.group = group
        self.cache = StageCache(Path(cfg["paths"]["cache_dir"]) / "stages")
        self.launch = launch_id()
        self.datamodule: L.LightningDataModule | None = None
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ stages
    def required(
        self, cfg: Mapping[str, Any], base_dir: Path
    ) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
        """Obtain every stage ``cfg``'s strategy requires: (frozen nets by role, records by role)."""
        frozen: dict[str, nn.Module] = {}
        records: dict[str, dict[str, Any]] = {}
        for role in strategy_class(cfg).required_roles(cfg):
            role_cfg = cfg["strategy"][role]
            sub_cfg = stage_config(cfg, role_cfg)
            frozen[role], records[role] = self.obtain(role, role_cfg, sub_cfg, base_dir / role)
        return frozen, records

    def _decide(self, plan_path: Path, decide: Any) -> dict[str, Any]:
        """Rank 0 runs ``decide()`` and shares the plan; other ranks wait for it."""
        if is_launch_rank_zero():
            plan = {**decide(), "launch": self.launch}
            write_json_atomic(plan_path, plan)
            return plan
        while True:
            plan = wait_for_json(
                plan_path, timeout_s=self.cache.lock_timeout_s
            )  # as long as rank 0 may wait for a stage lock
            if plan.get("launch") == self.launch:
                return plan
            time.sleep(0.2)  # a plan left by an earlier launch of this run folder

    def obtain(
        self, role: str, role_cfg: Mapping[str, Any], cfg: dict[str, Any], stage_dir: Path
    ) -> tuple[nn.Module, dict[str, Any]]:
        """A frozen network for ``role``: from a given checkpoint, this run's folder, the cache, or training."""
        sub_frozen, sub_records = self.required(cfg, stage_dir)
        key = stage_key(cfg, {r: rec["key"] for r, rec in sub_records.items()})
        name = f"{role}-{cfg['strategy']['name']}-{key}"
        module = build_module(cfg, self.info, sub_frozen)
        record: dict[str, Any] = {
            "role": role,
            "strategy": cfg["strategy"]["name"],
            "key": key,
            "requires": sub_records,
        }
        stage_dir.mkdir(parents=True, exist_ok=True)
        lock = self.cache.lock(name) if is_launch_rank_zero() else None

        def decide() -> dict[str, Any]:
            if role_cfg.get("ckpt"):
                return {"source": "ckpt", "net": str(Path(role_cfg["ckpt"]).resolve())}
            done = read_json(stage_dir / "stage.json")
            if done and done.get("key") == key and (stage_dir / "net.pt").exists():
                return {"source": "run", "net": str(stage_dir / "net.pt")}
            assert lock is not None
            lock.acquire()  # held until this stage is published (or the job fails)
            hit = self.cache.lookup(name)
            if hit is not None:
                lock.release()
                return {
                    "source": "cache",
                    "net": hit["net"],
                    "cached": {k: hit.get(k) for k in ("metrics", "created")},
                }
            return {"source": "train"}

        try:
            plan = self._decide(stage_dir / "plan.json", decide)
            log.info("stage %s (%s): key %s -> %s", role, cfg["strategy"]["name"], key, plan["source"])
            if plan["source"] == "train":
                module, result = train_stage(
                    cfg, role, stage_dir, self.datamodule, self.info, sub_frozen, self.group
                )
                record.update(result)
                if is_launch_rank_zero():
                    torch.save(module.net.state_dict(), stage_dir / "net.pt")
                    meta = {
                        "key": key,
                        "name": name,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "metrics": result["metrics"],
                        "config": cfg,
                    }
                    self.cache.publish(name, stage_dir / "net.pt", meta)
                    write_json_atomic(stage_dir / "stage.json", {"key": key, **result})
                net_path = stage_dir / "net.pt"
            else:
                net_path = Path(plan["net"])
                load_net_weights(module.net, net_path)
                record.update(
                    (read_json(stage_dir / "stage.json") or {})
                    if plan["source"] == "run"
                    else plan.get("cached") or {}
                )
                metrics = record.get("metrics") or {}  # the same accuracy fields as a freshly trained stage
                record.setdefault("test_acc", metrics.get("test/acc"))
                record.setdefault("clean_acc", metrics.get("test/acc_clean"))
        finally:
            if lock is not None and lock.is_locked:
                lock.release()
        record.update(
            {
                "source": plan["source"],
                "net": str(net_path),
                "sha256": sha256_file(net_path) if net_path.exists() else None,
            }
        )
        return module.net, record

    # ------------------------------------------------------------------ the job
    def run(self) -> dict[str, Any]:
        """Train the whole pipeline and write ``results.json``; returns the results."""
        cfg = self.cfg
        start = time.perf_counter()
        self.datamodule, self.info = build_datamodule(cfg)
        frozen, records = self.required(cfg, self.run_dir)
        main_dir = self.run_dir / "main"
        job_type = "student" if "teacher" in records else "main"  # W&B job type next to the teacher stage's
        module, main = train_stage(cfg, job_type, main_dir, self.datamodule, self.info, frozen, self.group)
        main_key = stage_key(cfg, {r: rec["key"] for r, rec in records.items()})
        if is_launch_rank_zero():
            torch.save(module.net.state_dict(), main_dir / "net.pt")
            if not strategy_class(cfg).required_roles(cfg) and not cfg.get(
                "init_from"
            ):  # a plain classifier trained here: later pipelines may reuse it as a stage
                name = f"teacher-{cfg['strategy']['name']}-{main_key}"
                if self.cache.lookup(name) is None:
                    with self.cache.lock(name):
                        if self.cache.lookup(name) is None:
                            self.cache.publish(
                                name,
                                main_dir / "net.pt",
                                {"key": main_key, "name": name, "metrics": main["metrics"], "config": cfg},
                            )
        noise = module.noise
        results = {
            "status": "complete",
            "strategy": cfg["strategy"]["name"],
            "run_dir": str(self.run_dir),
            "seed": cfg["seed"],
            "noise": {
                "name": cfg["noise"]["name"],
                "level_name": noise.level_name,
                "level": noise.level,
                "describe": noise.describe(),
            },
            "test_acc": main["test_acc"],
            "clean_acc": main["clean_acc"],
            "robustness": main["robustness"],
            **{k: main["metrics"][f"test/{k}"] for k in IMAGE_METRICS if f"test/{k}" in main["metrics"]},
            "wall_time_s": time.perf_counter() - start,
            "train_images_per_s": main["train_images_per_s"],
            "stages": {**records, "main": {**main, "key": main_key, "net": str(main_dir / "net.pt")}},
            "config": cfg,
            "versions": package_versions(),
        }
        return results


def run_pipeline(cfg: Mapping[str, Any], run_dir: Path, group: str) -> dict[str, Any]:
    """Run a job into ``run_dir`` unless it is already complete there; write results.json atomically.

    A failed job records ``status: failed`` (never over a complete result), so a report lists it.
    """
    done = read_complete_results(run_dir)
    if done is not None and cfg.get("resume", True):
        log.info("%s is complete; skipping (resume=false to rerun)", run_dir)
        return done
    try:
        results = Pipeline(cfg, run_dir, group).run()
    except Exception as err:
        if is_launch_rank_zero() and read_complete_results(run_dir) is None:
            write_json_atomic(
                run_dir / "results.json",
                {
                    "status": "failed",
                    "error": f"{type(err).__name__}: {err}",
                    "config": copy.deepcopy(dict(cfg)),
                },
            )
        raise
    if is_launch_rank_zero():
        write_json_atomic(run_dir / "results.json", results)
    return results
