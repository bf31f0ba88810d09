"""Experiment loggers: W&B (online/offline), CSV, TensorBoard; any number of them at once.

The ``logger`` config section maps names to ``_target_`` sections (``logger=many``: CSV and W&B).
A target is a callable that ssd calls once per stage with ``stage=`` (a ``StageInfo``: the stage
folder, its role, the run's group, its config) plus the section's own keys, and that returns a
Lightning ``Logger``: ``csv``, ``tensorboard`` and ``wandb`` below, or one of your own. So a
pipeline shows on W&B as one run per stage (job type ``teacher``/``main``/...) grouped under the
run or sweep. ``finish_logger`` closes a W&B run with the job's exit code, so a crashed job never
shows as "finished". A stage served from the stage cache shows its original training curves
(``replay_history``) and links the W&B run that trained it (``wandb_run_ref``, kept in the entry).
"""

from __future__ import annotations

import csv as csvlib
import netrc
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.logger import _convert_params
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from ssd.dist import is_launch_rank_zero
from ssd.resolvers import noise_label
from ssd.stage_info import StageInfo


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; else online when credentials exist, offline otherwise.

    The result is exported as ``WANDB_MODE``: the logger's own ``mode`` argument alone
    still starts a network thread.
    """
    mode = os.environ.get("WANDB_MODE")
    if not mode:
        mode = "online" if _has_wandb_credentials() else "offline"
        os.environ["WANDB_MODE"] = mode
    return mode


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _wandb_run_id(stage_dir: Path) -> str:
    """A run id kept in the stage folder, so a resumed stage continues the same W&B run. Under a W&B
    sweep agent (experiments/wandb_sweep.yaml) the job's own stage is the run the agent started
    (``WANDB_RUN_ID``), so the sweep sees its metrics."""
    path = stage_dir / "wandb_id.txt"
    if path.exists():
        return path.read_text().strip()
    agent_run = os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None
    run_id = (agent_run if stage_dir.name == "main" else None) or uuid.uuid4().hex[
        :16
    ]  # W&B takes any [a-z0-9]
    stage_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id)
    return run_id


class _StageCSVWriter(ExperimentWriter):
    """Lightning's CSV writer, for a stage folder that is never empty (``plan.json``, checkpoints).

    Lightning's writer warns about a non-empty folder and deletes ``metrics.csv``; here a resumed
    stage appends to its ``metrics.csv`` (keeping its columns) and a fresh one starts a new file.
    """

    def __init__(self, log_dir: str, keep_previous: bool) -> None:
        self.keep_previous = keep_previous  # (read by _check_log_dir_exists, which __init__ calls)
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if not self.keep_previous:
            path.unlink()
            return
        with path.open(newline="") as handle:
            header = next(csvlib.reader(handle), [])
        self.metrics_keys = sorted(header)


class StageCSVLogger(CSVLogger):
    """``metrics.csv`` and ``hparams.yaml`` in the stage folder; ``resuming``: append to them."""

    def __init__(self, stage_dir: Path, resuming: bool) -> None:
        super().__init__(save_dir=str(stage_dir), name="", version="")
        self._resuming = resuming

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _StageCSVWriter(self.log_dir, keep_previous=self._resuming)
        return self._experiment


class StageWandbLogger(WandbLogger):
    """W&B with the run config logged once: at ``wandb.init`` (``config=``, top-level keys).

    Strategies save ``{"cfg": <the same config>, "data": ...}`` as hyperparameters (for their
    checkpoints); Lightning would add that ``cfg`` to the W&B config a second time, as ``cfg.*``.
    """

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        params = {k: v for k, v in _convert_params(params).items() if k != "cfg"}
        if params:
            super().log_hyperparams(params)


def csv(stage: StageInfo) -> Logger:
    """``metrics.csv`` in the stage folder (appended to when the stage resumes)."""
    return StageCSVLogger(stage.dir, stage.resuming)


def tensorboard(stage: StageInfo) -> Logger:
    """TensorBoard event files under ``<stage>/tensorboard`` (no placeholder ``hp_metric``: ssd logs test/acc)."""
    return TensorBoardLogger(save_dir=str(stage.dir), name="tensorboard", version="", default_hp_metric=False)


def wandb(
    stage: StageInfo, project: str, entity: str | None, group: str | None, tags: Sequence[str]
) -> Logger:
    """A W&B run per stage: online when logged in, offline otherwise (``wandb_mode``), resumed with the stage.

    ``group``: null groups the stages of a run (or the jobs of a sweep) together.
    """
    wandb_mode()
    return StageWandbLogger(
        project=project,
        entity=entity,
        group=group or stage.group,
        job_type=stage.role,  # teacher | denoiser | classifier, and the job's own: student | main
        name=run_name(stage),
        id=_wandb_run_id(stage.dir) if is_launch_rank_zero() else None,  # only rank 0 has a W&B run
        resume="allow",
        save_dir=str(stage.dir),
        tags=list(tags),
        config=dict(stage.config),
    )


def run_name(stage: StageInfo) -> str:
    """A stage's W&B run named by what it trained: ``self_distill-σ0.2-s0`` (strategy, noise, run seed;
    the teacher stage of that job is ``vanilla-σ0.2-s0``, job type ``teacher``)."""
    cfg = stage.config
    if not all(key in cfg for key in ("strategy", "noise", "seed")):  # a stage without its config
        return f"{stage.dir.parent.name}/{stage.role}"
    noise = cfg["noise"]
    level = noise_label(noise)
    if level.startswith("gaussian") and "sigma" in noise:
        level = f"σ{noise['sigma']}"
    return f"{cfg['strategy']['name']}-{level}-s{cfg['seed']}"


@rank_zero_only
def finish_loggers(loggers: Sequence[Logger], exit_code: int = 0) -> None:
    """Close the loggers of a stage; W&B gets the exit code of the job."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            if logger._experiment is not None:  # noqa: SLF001 - don't create a run to close it
                logger.experiment.finish(exit_code=exit_code)
        else:
            logger.finalize("success" if exit_code == 0 else "failed")


def wandb_run_ref(loggers: Sequence[Logger]) -> dict[str, Any] | None:
    """Where a stage's W&B run lives (``id``, ``project``, ``entity``, ``url``; the url is known online
    only), kept with a cached stage so a job that reuses it links the run that trained it."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:  # noqa: SLF001
            run = logger.experiment
            ref = {"id": run.id, "project": run.project, "entity": run.entity, "url": None}
            try:
                ref["url"] = run.url or None  # offline: None
            except Exception:  # noqa: BLE001 - an offline run may not know its url
                ref["url"] = None
            return ref
    return None


@rank_zero_only
def replay_history(
    loggers: Sequence[Logger], history: Sequence[Mapping[str, float]], provenance: Mapping[str, Any]
) -> None:
    """A stage that is evaluated, not trained, here (its weights from the stage cache): its original
    training curves, one point per epoch at the epoch's optimizer step, and where it came from
    (``provenance``: cache entry, when and by which commit, its original W&B run) as hyperparameters."""
    for logger in loggers:
        if provenance:
            logger.log_hyperparams({"provenance": dict(provenance)})
        for row in history:
            metrics = {k: float(v) for k, v in row.items() if k != "step"}
            logger.log_metrics(metrics, step=int(row["step"]))


@rank_zero_only
def log_images(loggers: Sequence[Logger], key: str, images: Any, caption: str | None = None) -> None:
    """Log an image grid (a [3,H,W] tensor in [0,1]) to W&B and TensorBoard; other loggers skip it."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):  # as uint8 HWC: W&B stores float tensors unscaled (all black)
            pixels = (images.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            logger.log_image(key=key, images=[pixels], caption=[caption] if caption else None)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, images)


def supports_media(loggers: Sequence[Logger]) -> bool:
    """Whether any of ``loggers`` takes images (W&B, TensorBoard)."""
    return any(isinstance(logger, WandbLogger | TensorBoardLogger) for logger in loggers)


@rank_zero_only
def log_curve(
    loggers: Sequence[Logger], key: str, level_name: str, points: list[tuple[float, float]]
) -> None:
    """A robustness curve (noise level, accuracy) as a W&B table with a line plot; other loggers
    already have it as the scalars ``curve/<level>``."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb as wandb_lib

        table = wandb_lib.Table(
            columns=[level_name, "accuracy"], data=[[level, acc] for level, acc in points]
        )
        logger.experiment.log(
            {
                f"{key}_table": table,
                key: wandb_lib.plot.line(table, level_name, "accuracy", title=f"accuracy vs {level_name}"),
            }
        )


def log_per_class(loggers: Sequence[Logger], per_class: Mapping[str, Any]) -> None:
    """Per-class test accuracy (a table and bar chart) and the confusion matrices (W&B's confusion-matrix
    chart, from counts) of ``NoisyImageModule.class_results``; other loggers keep them in results.json."""
    views = [k for k in per_class if k != "classes"]
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb as wandb_lib

        first = per_class[views[0]]
        names = per_class["classes"] or [str(i) for i in range(len(first["accuracy"]))]
        table = wandb_lib.Table(
            columns=["class", *(f"accuracy_{v}" for v in views)],
            data=[[name, *(per_class[v]["accuracy"][i] for v in views)] for i, name in enumerate(names)],
        )
        media: dict[str, Any] = {
            "per_class/accuracy_table": table,
            "per_class/accuracy": wandb_lib.plot.bar(
                table, "class", f"accuracy_{views[0]}", title="test accuracy by class"
            ),
        }
        for view in views:
            counts = per_class[view]["confusion"]
            cells = wandb_lib.Table(
                columns=["Actual", "Predicted", "nPredictions"],
                data=[
                    [names[i], names[j], counts[i][j]] for i in range(len(names)) for j in range(len(names))
                ],
            )
            media[f"per_class/confusion_{view}"] = wandb_lib.plot_table(
                "wandb/confusion_matrix/v1",
                cells,
                {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
                {"title": f"confusion matrix ({view})"},
            )
        logger.experiment.log(media)
