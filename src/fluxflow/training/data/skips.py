"""The tally of skipped samples, shared by the main process and every DataLoader worker.

Workers are separate processes, so the tally lives in shared memory without locks (a lock made in one
multiprocessing context cannot travel to workers started in another): a map-style source writes the
kind of each bad index into that index's own slot, so it is counted once however many epochs read it;
other skips go to a row of counters owned by one process (the main one or a worker). The first few skips
of each kind are logged and named; ``summary()`` is the final tally, out of every sample the source named.
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
_SLOT_BYTES = 512  # per row and kind: room for the first few names of that kind
_NAME_CHARS = 160  # a longer name is cut in the tally (the per-skip warning has it whole)


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
    """Counts skipped samples by kind across processes; names the first ``warn_first`` of each kind.

    ``n_named``: how many samples the source names (captions-file lines, rows), bad ones included, so the
    tally reads "skipped 13 of 40 samples named"; None for a stream (its length is not known).
    """

    def __init__(self, n_items: int | None = None, warn_first: int = 3, n_named: int | None = None) -> None:
        self.warn_first, self.n_named = warn_first, n_named
        kinds = len(BAD_KINDS)
        self._counts = mp.RawArray(ctypes.c_longlong, _ROWS * kinds)
        self._noted = mp.RawArray(ctypes.c_longlong, _ROWS * kinds)  # record() calls per row and kind
        self._names = mp.RawArray(ctypes.c_char, _ROWS * kinds * _SLOT_BYTES)
        self._marks = None
        if n_items:
            self.track(n_items)

    def track(self, n_items: int) -> None:
        """Count skips once per index ``0..n_items-1`` from now on (map-style sources)."""
        self._marks = mp.RawArray(ctypes.c_byte, n_items)

    def record(self, bad: BadSample, index: int | None = None) -> bool:
        """Count ``bad`` (once per ``index`` when one is given); True when it was newly counted.

        The first ``warn_first`` skips of each kind are logged with their names, in every process together
        (so files that fail to decode are named even after many missing ones).
        """
        kind = BAD_KINDS.index(bad.kind)
        row = _row()
        if index is not None and self._marks is not None:
            if self._marks[index]:
                return False
            self._marks[index] = kind + 1
        else:
            self._counts[row * len(BAD_KINDS) + kind] += 1
        seen = self._noted_of(kind)
        self._remember(row, kind, bad.name)
        if seen < self.warn_first:
            quiet = f" (further {bad.kind} skips are counted quietly; the tally comes at the end)"
            logger.warning("skipping bad sample %s%s", bad, quiet if seen + 1 == self.warn_first else "")
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

    def first_names(self) -> dict[str, list[str]]:
        """``{kind: names}``: the first ``warn_first`` skipped samples of each kind (main process first)."""
        out: dict[str, list[str]] = {}
        for kind, name in enumerate(BAD_KINDS):
            names = [n for row in range(_ROWS) for n in self._slot(row, kind).split("\n") if n]
            if names:
                out[name] = names[:self.warn_first]
        return out

    def summary(self, n_total: int | None = None) -> str:
        """One line for the log, e.g. ``"skipped 4 of 120 samples named: 3 missing, 1 truncated; missing:
        a.png (line 2), b.png (line 5), c.png (line 9) and 1 more; truncated: d.png (line 40)"``.

        The total is ``n_named`` (every sample the source names, bad ones included); ``n_total`` overrides it.
        """
        counts = self.counts()
        if not counts:
            return "no samples skipped"
        n_total = self.n_named if n_total is None else n_total
        of = f" of {n_total} samples named" if n_total is not None else " samples"
        kinds = ", ".join(f"{n} {k}" for k, n in counts.items())
        named = self.first_names()
        listed = [f"{k}: {_listing(named.get(k, []), n)}" for k, n in counts.items() if named.get(k)]
        return "; ".join([f"skipped {sum(counts.values())}{of}: {kinds}", *listed])

    def _noted_of(self, kind: int) -> int:
        """How many skips of ``kind`` have been recorded so far, in every process."""
        return sum(self._noted[row * len(BAD_KINDS) + kind] for row in range(_ROWS))

    def _slot(self, row: int, kind: int) -> str:
        start = (row * len(BAD_KINDS) + kind) * _SLOT_BYTES
        return bytes(self._names[start:start + _SLOT_BYTES]).split(b"\0", 1)[0].decode("utf-8", "replace")

    def _remember(self, row: int, kind: int, name: str) -> None:
        cell = row * len(BAD_KINDS) + kind
        self._noted[cell] += 1
        if self._noted[cell] > self.warn_first:
            return
        start = cell * _SLOT_BYTES
        used = len(self._slot(row, kind).encode("utf-8"))
        short = name.replace("\n", " ")
        short = short if len(short) <= _NAME_CHARS else short[:_NAME_CHARS] + "..."
        entry = (short + "\n").encode("utf-8")
        if used + len(entry) < _SLOT_BYTES:
            self._names[start + used:start + used + len(entry)] = entry

    # Shared memory may only travel to a process being started (a DataLoader worker). Any other pickling
    # (deepcopy, datasets' fingerprinting) gets a detached copy with the same numbers.
    def __getstate__(self) -> dict:
        if get_spawning_popen() is not None:
            return dict(self.__dict__)
        return {"warn_first": self.warn_first, "n_named": self.n_named, "counts": bytes(self._counts),
                "noted": bytes(self._noted), "names": bytes(self._names),
                "marks": bytes(self._marks) if self._marks is not None else None}

    def __setstate__(self, state: dict) -> None:
        if "counts" not in state:
            self.__dict__.update(state)
            return
        self.__init__(None, state["warn_first"], state["n_named"])
        for field in ("counts", "noted", "names"):
            ctypes.memmove(getattr(self, f"_{field}"), state[field], len(state[field]))
        if state["marks"]:
            self.track(len(state["marks"]))
            ctypes.memmove(self._marks, state["marks"], len(state["marks"]))


def _listing(names: list[str], count: int) -> str:
    """``"a.png, b.png, c.png and 4 more"``: the names known, and how many of ``count`` are not shown."""
    more = f" and {count - len(names)} more" if count > len(names) else ""
    return ", ".join(names) + more
