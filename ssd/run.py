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
    from ssd.results import write_atomic

    text = OmegaConf.to_yaml(OmegaConf.create(container)).encode()
    write_atomic(run_dir / "config.resolved.yaml", lambda handle: handle.write(text))  # only once it matches


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


class SweepCheck(Callback):
    """Hydra callback for ``-m`` sweeps: every job's config is validated before the first job starts
    (each bad job named, with its error; the good ones still run), and at the end a summary says which
    jobs are complete, failed (with the reason) or skipped (already complete), where the runs are and
    what to run next. The sweep exits 1 if a job failed at run time, else 2 if one had a config error.

    Only a sweeper whose job list is known up front (Hydra's basic sweeper) is validated ahead; every
    sweep gets the summary. A job's failure never stops the others (``main``); a signal stops the sweep.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ssd.rundir import SWEEP_JOBS, varying

        SWEEP_JOBS.clear()
        jobs = sweep_job_overrides(config)
        shown = varying(jobs)
        for number, err in sweep_config_errors(config, jobs):
            print(
                f"ssd: sweep job #{number} ({shown[number]}) has a config error and will not run "
                f"(the other jobs will): {err}",
                file=sys.stderr,
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from ssd.rundir import SWEEP_JOBS, sweep_summary

        code = sweep_summary(Path(str(config.hydra.sweep.dir)), list(SWEEP_JOBS))
        SWEEP_JOBS.clear()
        if code:
            sys.exit(code)


def sweep_job_overrides(config: DictConfig) -> list[list[str]]:
    """The overrides of each job of a basic-sweeper sweep, in launch order (empty for other sweepers,
    whose jobs are decided as they run, such as Optuna)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_") or "")
    if not sweeper.endswith("BasicSweeper"):
        return []
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))  # type: ignore[arg-type]
    loader = GlobalHydra.instance().config_loader()
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def sweep_config_errors(config: DictConfig, jobs: list[list[str]]) -> list[tuple[int, ConfigError]]:
    """(job number, its error) for every job of the sweep (``jobs``: each one's overrides) whose config is bad."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    loader = GlobalHydra.instance().config_loader()
    bad = []
    for number, overrides in enumerate(jobs):
        job = loader.load_sweep_config(config, list(overrides))
        with open_dict(job):
            del job["hydra"]  # ssd's keys do not read Hydra's; its runtime parts are not set ahead of a job
        try:
            prepare(job)
        except ConfigError as err:
            bad.append((number, err))
    return bad


def record_sweep_job(run_dir: Path, code: int, skipped: bool) -> None:
    """Note how one job of a sweep ended (``ssd.rundir.SWEEP_JOBS``), with the reason its ``results.json`` gives."""
    from ssd.results import read_json
    from ssd.rundir import SWEEP_JOBS, SweepJob

    hc = HydraConfig.get()
    recorded = read_json(run_dir / "results.json") or {}
    if code == 0:
        status, reason = ("skipped", "already complete in its folder") if skipped else ("complete", "")
    else:
        status, reason = "failed", str(recorded.get("error") or f"exit status {code}")
    SWEEP_JOBS.append(SweepJob(int(hc.job.num), tuple(hc.overrides.task), status, reason, run_dir))


def composition_error_message(err: Exception) -> str:
    """One line for a command line Hydra cannot compose: an unknown group option (with the options
    there are), a key a section lacks without ``+``, or an override Hydra's grammar rejects (quote it)."""
    import re

    from hydra.errors import OverrideParseException

    text = str(err)
    if isinstance(err, OverrideParseException):
        override = getattr(err, "override", "") or text.splitlines()[0].split(": ", 1)[-1]
        key, _, value = str(override).partition("=")
        return (
            f"{override} cannot be read: Hydra's override grammar rejects a character in it (such as ; , "
            f"spaces, brackets or non-ASCII letters); quote the value: '{key}=\"{value}\"'"
        )
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    options = re.search(r"Available options in '([^']+)':\n((?:\t.*\n?)+)", text)
    if missing and options:
        group, name = missing.groups()
        allowed = ", ".join(line.strip() for line in options.group(2).splitlines() if line.strip())
        return (
            f"{group}={name} is not allowed: must be one of {allowed} "
            f"(the configs in conf/{group}, or a folder of your own on hydra.searchpath)"
        )
    append = re.search(r"Could not override '([^']+)'\.\s*To append to your config use (\S+)", text)
    if append:
        key, plus = append.groups()
        section, _, name = key.rpartition(".")
        return (
            f"{plus[1:]} is not allowed: {section or 'the config'} has no key {name!r}; fix the spelling, "
            f"or add a new key with {plus}"
        )
    return " ".join(line.strip() for line in text.splitlines() if line.strip() and "search path" not in line)


def main() -> Any:
    """The ``ssd`` command (= ``python -m ssd.run``): ``hydra_main`` as Hydra runs it, except that a
    command line Hydra cannot compose is a config error like any other: one line, exit status 2."""
    import hydra._internal.utils as hydra_internal
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    report = hydra_internal.run_and_report

    def run_and_report(func: Any) -> Any:
        def composed() -> Any:
            try:
                return func()
            except (ConfigCompositionException, MissingConfigException, OverrideParseException) as err:
                print(f"ssd: config error: {composition_error_message(err)}", file=sys.stderr)
                raise SystemExit(EXIT_CONFIG_ERROR) from None

        return report(composed)

    hydra_internal.run_and_report = run_and_report
    try:
        reads_only = {"--help", "-h", "-sc", "--shell-completion"} & set(sys.argv[1:])
        with one_config_repository() if reads_only else contextlib.nullcontext():
            return hydra_main()
    finally:
        hydra_internal.run_and_report = report


@contextlib.contextmanager
def one_config_repository() -> Iterator[None]:
    """``ssd --help`` and tab completion in a fraction of the time: Hydra asks a freshly deep-copied config
    repository for each group lookup (~600 for --help, which lists the groups three times over; ~75 for
    one TAB); while they run, one repository per (config, overrides) serves them all (they only read)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    create = ConfigLoaderImpl._parse_overrides_and_create_caching_repo  # noqa: SLF001
    made: dict[tuple[Any, ...], Any] = {}

    def shared(self: Any, config_name: str | None, overrides: list[str]) -> Any:
        key = (id(self), config_name, tuple(overrides))
        if key not in made:
            made[key] = create(self, config_name, overrides)
        return made[key]

    ConfigLoaderImpl._parse_overrides_and_create_caching_repo = shared  # noqa: SLF001
    try:
        yield
    finally:
        ConfigLoaderImpl._parse_overrides_and_create_caching_repo = create  # noqa: SLF001


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")  # checkout or wheel
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``results[objective]`` (what a Hydra sweeper such as Optuna maximises).

    In a ``-m`` sweep a job that fails (config error or at run time) is recorded and the sweep goes
    on (``SweepCheck`` sums up and sets the exit status); a signal stops the sweep."""
    from hydra.types import RunMode

    run_dir, group = run_dir_and_group(cfg)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    skipped = bool(cfg.resume) and read_complete_results(run_dir) is not None
    with handle_signals():  # SIGTERM / SIGINT -> status interrupted, exit 143 / 130
        try:
            code, results = execute(cfg, run_dir, group)
        except Exception:
            if not sweeping:
                raise
            log.exception("job failed: %s", run_dir)  # the traceback, in the job's log; the sweep goes on
            code, results = 1, None
    if sweeping and code < 128:  # 130 / 143: a signal, which stops the sweep
        record_sweep_job(run_dir, code, skipped)
        if code == 0:
            return (results or {}).get(cfg.objective)
        if not str(HydraConfig.get().sweeper._target_).endswith("BasicSweeper"):
            # a search (Optuna) marks a trial failed when its job raises, and goes on
            raise RuntimeError(f"job failed (exit status {code}): {run_dir / 'results.json'}")
        return None
    if code:
        sys.exit(code)
    return (results or {}).get(cfg.objective)


if __name__ == "__main__":
    main()
