"""What the browser may name: the app loads models and LoRA files only from where it was pointed.

A model is accepted when it is the ``--model`` the app was started with, a local path inside ``--runs``
(the pipelines found there are offered in the page), or a Hub repo id (``org/name``, unless ``--no_hub``).
Any other local path is refused, before anything is read from it. Symbolic links are followed first, so a
link inside ``--runs`` that points elsewhere is refused too. LoRA files must be ``.safetensors`` files (no
pickles) inside ``--runs``, a ``--lora_dir`` or the ``--model`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..pipelines.lora import LORA_WEIGHT_NAME as LORA_NAME
from ..repo_ids import is_repo_id
from ..report.run_data import is_run, stage_folders
from .limits import RequestError

PIPELINE_FILES = ("model_index.json",)  # a folder holding these is a saved pipeline


@dataclass(frozen=True)
class ModelChoice:
    """A model offered in the page: ``label`` shown, ``value`` the local path or Hub repo id loaded."""

    label: str
    value: str


@dataclass
class Access:
    """Where the app was pointed (``--model``, ``--runs``, ``--lora_dir``) and the checks against it."""

    model: str | None = None
    runs: Path | None = None
    lora_dirs: list[Path] = field(default_factory=list)
    allow_hub: bool = True

    def __post_init__(self):
        self.runs = Path(self.runs).expanduser().resolve() if self.runs else None
        self.lora_dirs = [Path(d).expanduser().resolve() for d in self.lora_dirs]

    # ------------------------------------------------------------ what exists
    def run_folders(self) -> list[Path]:
        """``--runs`` when it is a run, else the runs directly inside it (a pipeline run counts once)."""
        if self.runs is None or not self.runs.is_dir():
            return []
        if is_run(self.runs):
            return [self.runs]
        return sorted(p for p in self.runs.iterdir() if is_run(p))

    def model_choices(self) -> list[ModelChoice]:
        """The ``--model``, then every saved pipeline of the runs (``pipeline/``,
        ``stages/<i>-<name>/pipeline/``)."""
        choices = [ModelChoice(f"{self.model} (--model)", self.model)] if self.model else []
        for run in self.run_folders():
            for folder in [run, *stage_folders(run)]:
                pipeline = folder / "pipeline"
                if all((pipeline / name).is_file() for name in PIPELINE_FILES):
                    choices.append(ModelChoice(self._label(pipeline), str(pipeline)))
        return choices

    def lora_choices(self) -> list[str]:
        """LoRA files in the runs (``<run>/*/pytorch_lora_weights.safetensors``) and the ``--lora_dir``s."""
        found = []
        for run in self.run_folders():
            for folder in [run, *stage_folders(run)]:
                found += sorted(folder.glob(LORA_NAME)) + sorted(folder.glob(f"*/{LORA_NAME}"))
        for folder in self.lora_dirs:
            found += sorted(folder.rglob("*.safetensors")) if folder.is_dir() else []
        return [str(p) for p in found]

    def _label(self, path: Path) -> str:
        return str(path.relative_to(self.runs.parent)) if self.runs else str(path)

    # ------------------------------------------------------------ checks
    def check_model(self, text: str | None) -> str:
        """``text`` as the model to load (stripped), or :class:`RequestError` saying why it is refused."""
        name = (text or "").strip()
        if not name:
            raise RequestError("Choose a model first.")
        if name == self.model:
            return name
        path = Path(name).expanduser()
        if _looks_local(name, path):
            resolved = _resolve(path)
            if resolved is not None and (self._is_model_path(resolved) or self._in_runs(resolved)):
                return str(path)
            raise RequestError(f"Model {name}: refused. This app loads local models only from --runs "
                               f"({self.runs or 'not given'}) and the --model it was started with.")
        if is_repo_id(name):
            if not self.allow_hub:
                raise RequestError(f"Model {name}: refused. Hub models are off in this app (--no_hub).")
            return name
        raise RequestError(f"Model {name}: not a model of this app, a path inside --runs, or a Hub repo id "
                           f"(org/name).")

    def check_lora(self, text: str | None) -> str | None:
        """``text`` as a LoRA file to load (None for none), or :class:`RequestError` saying why not."""
        name = (text or "").strip()
        if not name:
            return None
        path = Path(name).expanduser()
        resolved = _resolve(path)
        roots = [r for r in (self.runs, *self.lora_dirs, self._model_folder()) if r is not None]
        if resolved is None or not any(resolved.is_relative_to(root) for root in roots):
            raise RequestError(f"LoRA {name}: refused. This app loads LoRA files only from --runs, "
                               f"--lora_dir and the --model folder.")
        if resolved.suffix != ".safetensors" or not resolved.is_file():
            raise RequestError(f"LoRA {name}: no such .safetensors file.")
        return str(resolved)

    def _is_model_path(self, resolved: Path) -> bool:
        return self.model is not None and _resolve(Path(self.model).expanduser()) == resolved

    def _in_runs(self, resolved: Path) -> bool:
        return self.runs is not None and resolved.is_relative_to(self.runs)

    def _model_folder(self) -> Path | None:
        path = _resolve(Path(self.model).expanduser()) if self.model else None
        return path if path is not None and path.is_dir() else None


def _looks_local(name: str, path: Path) -> bool:
    """A path, not a Hub repo id: it exists here, or is written as one (absolute, ``./``, ``~``, a file)."""
    return (path.is_absolute() or name.startswith((".", "~")) or path.suffix == ".safetensors"
            or "\\" in name or _exists(path))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a NUL in the text, a name too long
        return False


def _resolve(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL in the text
        return None
