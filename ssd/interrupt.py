"""SIGTERM and SIGINT end a run honestly: a ``status: interrupted`` result and exit code 128 + signal.

``timeout``, SLURM, Docker and Kubernetes stop a job with SIGTERM; Ctrl-C sends SIGINT. While
``handle_signals()`` is active, the first such signal raises :class:`Interrupted` in the main
thread, wherever it is, so the run writes its status and its process exits 143 (SIGTERM) or 130
(SIGINT). Everything ssd writes is atomic (checkpoints, weights, results), so stopping
anywhere is safe and a re-run resumes from the last checkpoint. A second signal of the same kind
gets the default action (the process dies at once), for a cleanup that hangs.

Inside a SLURM job, SIGUSR1 (what ``sbatch --signal=USR1@<seconds>`` sends before the time limit, as
Lightning's ``SLURMEnvironment(auto_requeue=True)`` expects) requeues the job (``ssd.slurm.requeue``:
``scontrol requeue <job id>``) and then stops the run like SIGTERM (``status: interrupted``, exit 138).
The requeued job reruns the same command into the same folder and resumes from the last epoch-end
checkpoint (``last.ckpt``, written every epoch), so its result is bit-identical to an uninterrupted run.
The part of the epoch in progress is trained again: a checkpoint taken mid-epoch would not resume
bit-identically. Lightning installs its own SIGUSR1 handler only where none is installed, so this one
is the one that runs. Outside SLURM, SIGUSR1 is left alone. Lightning adds its own SIGTERM handler
while it trains and calls this one after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ssd.slurm import job_id, requeue

SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: inside a SLURM job: requeue, then stop
REQUEUE_SIGNAL = signal.SIGUSR1


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt: not an Exception, so nothing swallows it
    """The run was stopped by a signal; ``exit_code`` is what the process should exit with."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code_of(err: BaseException) -> int | None:
    """The exit status an interruption asks for (143 SIGTERM, 130 SIGINT), None for other errors."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(err, Interrupted):
        return err.exit_code
    if isinstance(err, SIGTERMException):  # Lightning's own SIGTERM handling, when ours is not installed
        return 128 + signal.SIGTERM
    if isinstance(err, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return None


def signal_name_of(err: BaseException) -> str | None:
    code = exit_code_of(err)
    return signal.Signals(code - 128).name if code else None


class _Handler:
    def __init__(self) -> None:
        self.received: set[int] = set()

    def __call__(self, signum: int, frame: Any) -> None:
        if signum in self.received:  # a second one: die now, the default way
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received.add(signum)
        if signum == REQUEUE_SIGNAL:
            requeue()
        raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT (in SLURM also SIGUSR1, after a requeue) into :class:`Interrupted` for the body
    (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _Handler()
    signals = (*SIGNALS, REQUEUE_SIGNAL) if job_id() is not None else SIGNALS
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
