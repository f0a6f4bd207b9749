"""The one exception a bad config raises, and the closest-name hint its messages use."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A bad config, found before anything is built: every problem, each naming its key path.

    ``problems`` keeps the individual messages (``"schedulers.vae.eta_min_factor must be >= 0, got -1"``);
    ``str(error)`` joins them, prefixed with the file they came from when there is one.
    """

    def __init__(self, problems: str | Iterable[str], source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return where + self.problems[0]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{where}{len(self.problems)} problems:\n{lines}"


def did_you_mean(name: object, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """``" (did you mean 'vae'?)"`` for the closest candidate (case-insensitive), else ``""``."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=cutoff)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
