"""Loaded pipelines, kept in a small LRU cache keyed by the resolved model (local path or Hub repo id).

Resolution and load errors reuse ``fluxflow-generate``'s checks, so a bad model reads the same in both tools;
no code from a model is ever run (``FluxFlowPipeline`` loads its own classes, ``trust_remote_code`` is never
passed). Each loaded model has a lock: one generation at a time per model.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .limits import RequestError

logger = logging.getLogger("fluxflow.app")
CACHE_SIZE = 2  # models kept loaded


@dataclass
class LoadedModel:
    """A pipeline ready to sample, with what the page needs to know about it."""

    name: str  # as chosen in the page: the recorded model
    key: str  # the resolved local path or the Hub repo id
    pipe: object
    device: str
    dtype: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    lora: str | None = None  # the LoRA file loaded into the pipeline now, if any

    @property
    def multiple(self) -> int:
        """Heights and widths must be multiples of this: the VAE factor x the transformer's patch size."""
        return self.pipe.vae_scale_factor * self.pipe.transformer.config.patch_size

    @property
    def default_size(self) -> int:
        """The size the model was trained at (``transformer.config.sample_size`` x the VAE factor)."""
        return self.pipe.default_sample_size

    def describe(self) -> str:
        return (f"**{self.name}** loaded on {self.device} ({self.dtype}): trained at {self.default_size} px; "
                f"sizes in multiples of {self.multiple} px.")


class PipelineCache:
    """Load on first use, keep the ``size`` most recently used; loading is serialized (one model at a time
    is being built)."""

    def __init__(self, device: str = "auto", dtype: str = "auto", size: int = CACHE_SIZE):
        self.device, self.dtype, self.size = device, dtype, max(1, size)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        """The loaded model ``name`` (already checked by :class:`~fluxflow.app.access.Access`); a model that
        cannot be resolved or loaded is a :class:`RequestError` with the reason."""
        with self._lock:
            key = resolve_key(name)
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load_model(name, key, self.device, self.dtype)
            self._models[key] = model
            while len(self._models) > self.size:
                old = self._models.popitem(last=False)[1]
                logger.info("unloading %s (cache of %d models)", old.name, self.size)
            return model


def resolve_key(name: str) -> str:
    """The cache key: the resolved local path, or the Hub repo id as written."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def load_model(name: str, key: str, device: str, dtype: str) -> LoadedModel:
    """Check the model as ``fluxflow-generate`` does (pipeline folder, checkpoint, Hub repo), then load it."""
    from ..cli.generate import UsageError, load_pipeline, resolve_model

    args = SimpleNamespace(model=name, device=device, dtype=dtype, loras=[])
    try:
        args.model_path = resolve_model(name)
        pipe = load_pipeline(args)  # sets args.device and args.dtype to what "auto" picked
    except UsageError as err:
        raise RequestError(_readable(str(err))) from None
    except Exception as err:  # whatever else a broken model raises: a message, and the app keeps serving
        logger.exception("loading %s failed", name)
        raise RequestError(f"Model {name}: cannot be loaded ({type(err).__name__}: {err})") from None
    logger.info("loaded %s on %s (%s)", name, args.device, args.dtype)
    return LoadedModel(name=name, key=key, pipe=pipe, device=args.device, dtype=args.dtype)


def _readable(message: str) -> str:
    """fluxflow-generate's ``--model X: why`` as ``Model X: why`` (the page has no flags)."""
    message = " ".join(message.split())
    return "Model " + message[len("--model "):] if message.startswith("--model ") else message
