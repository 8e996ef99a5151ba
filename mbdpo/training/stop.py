"""Stopping a run cleanly: Ctrl-C, or SIGTERM (what a cluster scheduler sends before it pre-empts a job).

While a trainer runs inside :class:`StopRequest`, the first of these signals
only asks it to stop. The trainer finishes the piece of work it is in (the
current episode online, the current update offline), writes a checkpoint and
raises :class:`RunStopped`; running the same command again resumes from that
step, so nothing done before the signal is lost. A second signal stops at
once (``KeyboardInterrupt``) and keeps the previous checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from tqdm import tqdm

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(Exception):
    """A run stopped on request after writing its checkpoint; ``signal`` is the signal that asked."""

    def __init__(self, run_dir: Path, step: int, signum: int):
        super().__init__(f"stopped on {signal.Signals(signum).name} at step {step:,}; the checkpoint in {run_dir} "
                         f"is at that step: run the same command to resume")
        self.signal = signum


class StopRequest:
    """Context manager that turns the first SIGINT or SIGTERM into a request (``signal`` is then set).

    Signal handlers can only be installed in the main thread; elsewhere (a
    trainer started from a worker thread) the signals keep their usual effect.
    """

    def __init__(self, unit: str):
        self.unit = unit  # what the trainer finishes before it stops, for the message
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._request)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signal is not None

    def _request(self, signum: int, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        tqdm.write(f"mbdpo: {signal.Signals(signum).name}: finishing the current {self.unit}, then writing a "
                   f"checkpoint and stopping (send it again to stop at once, keeping the last checkpoint)",
                   file=sys.stderr)
