"""``python -m ssd.run``: compose the config with Hydra, validate it, run the job.

Thin on purpose: ``run_config(cfg)`` does the work and returns the results dict, so tests
and notebooks call it directly with a composed config; ``execute`` is the job exactly as the
command line runs it, returning its exit status:

* 0: complete (or already complete in its folder, and skipped);
* 1: failed (``results.json`` ``status: failed`` with the error);
* 2: a config error, before any data is read or any network is built;
* 130 / 143: interrupted by SIGINT / SIGTERM (``status: interrupted``, stage and epoch).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ssd.config import ConfigError
from ssd.interrupt import exit_code_of, handle_signals, signal_name_of
from ssd.lazy import lazy
from ssd.paths import conf_dir
from ssd.results import read_complete_results, read_status, write_json_atomic
from ssd.rundir import holds_a_run, prepare_run_dir

# torch, Lightning and the parts that import them are imported once a job runs, not for `ssd --help`,
# `--cfg` or tab completion, which Hydra answers before calling main (tests/test_cli.py)
torch = lazy("torch")
launch = lazy("ssd.launch")
check_writable = lazy("ssd.config.resources", "check_writable")
setup_console = lazy("ssd.console", "setup")
destroy_process_group = lazy("ssd.dist", "destroy_process_group")
is_launch_rank_zero = lazy("ssd.dist", "is_launch_rank_zero")
run_pipeline = lazy("ssd.pipeline", "run_pipeline")
resolve_auto = lazy("ssd.validate", "resolve_auto")
validate = lazy("ssd.validate", "validate")

#: exit status of a config error (argparse's convention for bad usage)
EXIT_CONFIG_ERROR = 2

log = logging.getLogger("ssd")


def prepare(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The job's config with its ``auto`` device settings made concrete, resolved and validated
    (``ssd.validate``): done once, by the process that runs the job (each rank of a job that torchrun
    starts is such a process). ``cfg`` is not changed."""
    container = resolve_auto(cfg)
    validate(container)
    return container


def run_dir_and_group(cfg: DictConfig | None = None) -> tuple[Path, str]:
    """This job's output folder and its W&B group (the sweep folder for multiruns).

    Where a launcher (torchrun, srun) started several processes, each composed its own folder
    from ``${now:...}``: all take rank 0's (``ssd.launch.shared_run_dir``, through files in
    ``cfg.paths.log_dir`` where torchrun's store is not there), and ranks 1.. log to
    ``rank<i>.log`` there. Also quiets the console (``ssd.console.setup``).
    """
    setup_console()
    hc = HydraConfig.get()
    log_dir = Path(cfg.paths.log_dir) if cfg is not None else Path(hc.runtime.cwd)
    run_dir = launch.shared_run_dir(hc, log_dir)
    return run_dir, launch.job_group(hc, run_dir)


def run_prepared(container: dict[str, Any], run_dir: Path, group: str) -> dict[str, Any]:
    """Run a prepared config's pipeline into ``run_dir`` in this process; return the results.

    Before anything is written, rank 0 checks that ``run_dir`` holds this config or nothing
    (``ssd.rundir``: a ConfigError naming the keys that differ; ``resume=false`` starts over).
    """
    record_run_config(container, run_dir)
    results = run_pipeline(container, run_dir, group)
    if is_launch_rank_zero():
        log.info(
            "%s done: noisy test acc %.4f, clean acc %.4f -> %s",
            results.get("strategy"),
            results.get("test_acc") or float("nan"),
            results.get("clean_acc") or float("nan"),
            run_dir / "results.json",
        )
    return results


def run_config(
    cfg: DictConfig | dict[str, Any], run_dir: Path | None = None, group: str | None = None
) -> dict[str, Any]:
    """Validate ``cfg`` and run its pipeline into ``run_dir``, in this process; return the results
    (what tests and notebooks call: ``execute`` is the job as the command line runs it)."""
    container = prepare(cfg)
    if run_dir is None:
        run_dir, group = run_dir_and_group()
    return run_prepared(container, run_dir, group or run_dir.name)


def record_run_config(container: dict[str, Any], run_dir: Path) -> None:
    """Rank 0: the folder holds this config or nothing (``ssd.rundir``), then ``run.json`` and
    ``config.resolved.yaml`` say so."""
    if not is_launch_rank_zero():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_run_dir(container, run_dir)  # a ConfigError for another config's folder; resume=false starts over
    OmegaConf.save(OmegaConf.create(container), run_dir / "config.resolved.yaml")  # only once it matches


@contextlib.contextmanager
def isolated_job() -> Iterator[None]:
    """A job leaves no trace for the next job of a sweep: no process group, ``os.environ`` and the
    torch thread count as they were."""
    environ, threads = dict(os.environ), torch.get_num_threads()
    try:
        yield
    finally:
        destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)


def record_config_error(err: ConfigError, cfg: DictConfig, run_dir: Path) -> None:
    """Explain a config error in the folder Hydra already made for the job (``status: failed``),
    unless the folder holds an earlier run, which stays as it was."""
    from ssd.console import FILE_ONLY  # (lazily, as ssd.console imports Lightning: see the imports)

    log.error("config error: %s", err, extra=FILE_ONLY)  # in run.log; the console gets execute's line once
    if not is_launch_rank_zero() or not run_dir.is_dir() or holds_a_run(run_dir):
        return
    try:
        config: Any = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - the error may be an unresolvable value itself
        config = OmegaConf.to_container(cfg, resolve=False)
    write_json_atomic(
        run_dir / "results.json",
        {
            "status": "failed",
            "error": f"ConfigError: {err}",
            "exit_code": EXIT_CONFIG_ERROR,
            "config": config,
        },
    )


def execute(cfg: DictConfig, run_dir: Path, group: str) -> tuple[int, dict[str, Any] | None]:
    """Run one job as ``python -m ssd.run`` does; return (exit status, results or None).

    See the module docstring for the exit statuses. Errors other than config errors and
    interruptions propagate (Hydra prints them; exit status 1).
    """
    try:
        with isolated_job():
            launch.check_rank_config(cfg)  # a rank torchrun started composed exactly its job's config
            container = prepare(cfg)  # before any other rank is started
            complete = container["resume"] and read_complete_results(run_dir) is not None
            if launch.starts_ranks(container["trainer"]) and not complete:
                return 0, launch.launch_ranks(cfg, run_dir)  # the ranks run the job (this function, each)
            return 0, run_prepared(container, run_dir, group)
    except ConfigError as err:
        record_config_error(err, cfg, run_dir)
        print(f"ssd: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR, None
    except BaseException as err:
        code = exit_code_of(err)
        if code is None:
            raise
        recorded = (
            "results.json status: interrupted" if read_status(run_dir) == "interrupted" else "before it began"
        )
        print(
            f"ssd: {signal_name_of(err)} received: the run stopped ({recorded}); "
            f"run the same command again to resume it from its last checkpoint ({run_dir})",
            file=sys.stderr,
        )
        return code, None


class OutputFolderCheck(Callback):
    """Hydra callback: an output folder that cannot be written is a config error (exit 2), found
    before Hydra makes the job folder (which would otherwise fail with a traceback)."""

    def _check(self, config: DictConfig, key: str) -> None:
        try:
            check_writable(OmegaConf.select(config, key), key)
        except ConfigError as err:
            print(f"ssd: config error: {err}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")  # checkout or wheel
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``results[objective]`` (what a Hydra sweeper such as Optuna maximises)."""
    run_dir, group = run_dir_and_group(cfg)
    with handle_signals():  # SIGTERM / SIGINT -> status interrupted, exit 143 / 130
        code, results = execute(cfg, run_dir, group)
    if code:
        sys.exit(code)
    return (results or {}).get(cfg.objective)


if __name__ == "__main__":
    main()
