"""Logs a person can read: one line per event, none glued onto the progress bar, quiet helpers.

Accelerate logs a line per file it saves or loads, `datasets` draws a download bar even for a local folder,
and every process of a multi-process run would print everything: :func:`readable_logs` turns those down for
the length of a run (warnings and errors still show), and sends log lines through ``tqdm.write``.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager

LIBRARY_LOGGERS = ("accelerate.checkpointing", "accelerate.accelerator")  # a line per saved or loaded file


@contextmanager
def readable_logs(main_process: bool, local_data: bool):
    """For the run inside: library per-file lines off, ``datasets`` bars off for local data, this process
    quiet unless something is wrong when it is not the main one, log lines printed above the progress bar."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    quiet = list(LIBRARY_LOGGERS) + ([] if main_process else ["fluxflow", "accelerate", "transformers", "datasets"])
    levels = {name: logging.getLogger(name).level for name in quiet}
    with ExitStack() as stack:
        for name in quiet:
            logging.getLogger(name).setLevel(logging.WARNING)
        stack.callback(lambda: [logging.getLogger(n).setLevel(level) for n, level in levels.items()])
        if local_data or not main_process:
            stack.enter_context(_no_datasets_bars())
        stack.enter_context(logging_redirect_tqdm())
        yield


@contextmanager
def _no_datasets_bars():
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
