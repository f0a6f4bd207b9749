"""The tally of skipped samples, shared by the main process and every DataLoader worker.

Workers are separate processes, so the tally lives in shared memory without locks (a lock made in one
multiprocessing context cannot travel to workers started in another): a map-style source writes the
kind of each bad index into that index's own slot, so it is counted once however many epochs read it;
other skips go to a row of counters owned by one process (the main one or a worker). The first few skips
are logged with their names; ``summary()`` is the final tally.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
from multiprocessing.context import get_spawning_popen

import numpy as np
import torch

from fluxflow.training.data.images import BAD_KINDS, BadSample

logger = logging.getLogger("fluxflow.data")

_ROWS = 65  # the main process and up to 64 workers each own a row (more workers share rows)
_NAME_BYTES = 1024  # per row: room for the first few names in the final tally


class DataError(ValueError):
    """The data cannot be used: no usable sample, a strict-mode problem, an unknown column or split.

    ``problems``: the bad samples behind a ``--strict_data`` error (empty otherwise).
    """

    problems: tuple[BadSample, ...] = ()


def strict_error(problems: list[BadSample], n_total: int, shown: int = 10) -> DataError:
    """The one ``--strict_data`` error: how many samples are bad, per kind, and the first ``shown`` of them.

    Every bad sample is on the error (``problems``) and, when they do not all fit in the message, in the
    log, so one run is enough to clean a data set.
    """
    every, more = [f"  - {p}" for p in problems], ""
    if len(problems) > shown:
        logger.error("--strict_data: all %d bad samples:\n%s", len(problems), "\n".join(every))
        more = f"\n  ... and {len(problems) - shown} more (all of them are in the log)"
    head = f"--strict_data: {len(problems)} of {n_total} samples are bad ({kind_counts(problems)}):"
    err = DataError("\n".join([head, *every[:shown]]) + more)
    err.problems = tuple(problems)
    return err


def kind_counts(problems: list[BadSample]) -> str:
    """``"2 missing, 1 truncated"``: how many of ``problems`` are of each kind, in ``BAD_KINDS`` order."""
    kinds = [p.kind for p in problems]
    return ", ".join(f"{kinds.count(k)} {k}" for k in BAD_KINDS if k in kinds)


def _row() -> int:
    info = torch.utils.data.get_worker_info()
    return 0 if info is None else 1 + info.id % (_ROWS - 1)


class SkipLog:
    """Counts skipped samples by kind across processes; warns about the first ``warn_first`` of them."""

    def __init__(self, n_items: int | None = None, warn_first: int = 5) -> None:
        self.warn_first = warn_first
        self._counts = mp.RawArray(ctypes.c_longlong, _ROWS * len(BAD_KINDS))
        self._names = mp.RawArray(ctypes.c_char, _ROWS * _NAME_BYTES)
        self._marks = None
        self._warned = 0  # per process
        if n_items:
            self.track(n_items)

    def track(self, n_items: int) -> None:
        """Count skips once per index ``0..n_items-1`` from now on (map-style sources)."""
        self._marks = mp.RawArray(ctypes.c_byte, n_items)

    def record(self, bad: BadSample, index: int | None = None) -> bool:
        """Count ``bad`` (once per ``index`` when one is given); True when it was newly counted."""
        kind = BAD_KINDS.index(bad.kind)
        row = _row()
        if index is not None and self._marks is not None:
            if self._marks[index]:
                return False
            self._marks[index] = kind + 1
        else:
            self._counts[row * len(BAD_KINDS) + kind] += 1
        self._remember(row, bad.name)
        self._warned += 1
        if self._warned <= self.warn_first:
            quiet = " (further skips are counted quietly; the tally comes at the end)"
            logger.warning("skipping bad sample %s%s", bad, quiet if self._warned == self.warn_first else "")
        return True

    def is_marked(self, index: int) -> bool:
        """True when ``index`` is already known to be bad (skip it without reading it again)."""
        return bool(self._marks is not None and self._marks[index])

    def counts(self) -> dict[str, int]:
        """``{kind: count}`` for the kinds seen so far, in every process."""
        totals = np.frombuffer(self._counts, dtype=np.int64).reshape(_ROWS, len(BAD_KINDS)).sum(0)
        if self._marks is not None:
            marks = np.frombuffer(self._marks, dtype=np.int8)
            totals = totals + np.bincount(marks, minlength=len(BAD_KINDS) + 1)[1:]
        return {k: int(n) for k, n in zip(BAD_KINDS, totals, strict=True) if n}

    def total(self) -> int:
        return sum(self.counts().values())

    def first_names(self) -> list[str]:
        """Names of the first skipped samples (up to ``warn_first`` per process, main process first)."""
        names = []
        for row in range(_ROWS):
            chunk = bytes(self._names[row * _NAME_BYTES:(row + 1) * _NAME_BYTES]).split(b"\0", 1)[0]
            names += [n for n in chunk.decode("utf-8", "replace").split("\n") if n]
        return names[:self.warn_first]

    def summary(self, n_total: int | None = None) -> str:
        """One line for the log: ``"skipped 3 of 120 samples: 2 missing, 1 truncated (first: a.png, ...)"``"""
        counts = self.counts()
        if not counts:
            return "no samples skipped"
        of = f" of {n_total}" if n_total is not None else ""
        kinds = ", ".join(f"{n} {k}" for k, n in counts.items())
        return f"skipped {sum(counts.values())}{of} samples: {kinds} (first: {', '.join(self.first_names())})"

    def _remember(self, row: int, name: str) -> None:
        start = row * _NAME_BYTES
        used = bytes(self._names[start:start + _NAME_BYTES]).split(b"\0", 1)[0]
        entry = (name.replace("\n", " ")[:200] + "\n").encode("utf-8")
        if used.count(b"\n") < self.warn_first and len(used) + len(entry) < _NAME_BYTES:
            self._names[start + len(used):start + len(used) + len(entry)] = entry

    # Shared memory may only travel to a process being started (a DataLoader worker). Any other pickling
    # (deepcopy, datasets' fingerprinting) gets a detached copy with the same numbers.
    def __getstate__(self) -> dict:
        if get_spawning_popen() is not None:
            return dict(self.__dict__)
        return {"warn_first": self.warn_first, "counts": bytes(self._counts), "names": bytes(self._names),
                "marks": bytes(self._marks) if self._marks is not None else None}

    def __setstate__(self, state: dict) -> None:
        if "counts" not in state:
            self.__dict__.update(state)
            return
        self.__init__(None, state["warn_first"])
        ctypes.memmove(self._counts, state["counts"], len(state["counts"]))
        ctypes.memmove(self._names, state["names"], len(state["names"]))
        if state["marks"]:
            self.track(len(state["marks"]))
            ctypes.memmove(self._marks, state["marks"], len(state["marks"]))
