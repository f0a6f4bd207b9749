"""What one app serves: the places it may read (:class:`~fluxflow.app.access.Access`), the request limits, the
model cache, and how often the Runs tab re-reads the run folders."""

from __future__ import annotations

from dataclasses import dataclass, field

from .access import Access
from .limits import Limits
from .models import PipelineCache

REFRESH_SECONDS = 10.0


@dataclass
class AppConfig:
    access: Access
    limits: Limits = field(default_factory=Limits)
    cache: PipelineCache = field(default_factory=PipelineCache)
    refresh_seconds: float = REFRESH_SECONDS
