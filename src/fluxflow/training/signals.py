"""SIGTERM/SIGINT (preemption, Ctrl+C): the run finishes what it is doing, saves, exits 0 and says how to resume.

Installed by `fluxflow-train` before anything else (no torch import here), so the promise holds from the first
line to the last: at start-up, during the steps and during the final save and exports.
"""

from __future__ import annotations

import logging
import signal
import threading

logger = logging.getLogger("fluxflow.train")


class StopSignal:
    """SIGTERM/SIGINT ask the run to finish what is in progress (start-up, a step, the final save), save a
    checkpoint and exit 0.

    A second SIGINT (Ctrl+C twice) interrupts at once. Handlers are installed only in the main thread and
    restored on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        logger.warning("%s received: finishing what is in progress, then saving a checkpoint (Ctrl+C again: stop "
                       "at once)", signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "a stop request"
