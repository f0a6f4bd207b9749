"""Sharing a run on the Hub: the exported pipeline's model card, and ``--push_to_hub``.

:func:`model_card` is the ``README.md`` of ``OUTPUT_PATH/pipeline/`` (diffusers' training-script card:
metadata for the Hub, a sample grid, how to load it). :class:`HubPusher` puts a run in one model repo: with
``--hub_push_checkpoints``, ``checkpoint.safetensors``, the logs and the newest grids under ``checkpoints/``
at each checkpoint, in the background; at the end the pipeline folder at the repo root, so
``FluxFlowPipeline.from_pretrained(repo_id)`` loads it. The token goes to ``huggingface_hub`` and nowhere
else: never logged, never written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData, get_token
from huggingface_hub.errors import HfHubHTTPError

from .. import __version__
from ..pipelines.lora import LORA_WEIGHT_NAME
from ..repo_ids import is_repo_id
from .checkpoint import CHECKPOINT_FILE
from .data.config import FOLDER_BUILDERS

logger = logging.getLogger("fluxflow.train")

TAGS = ["fluxflow", "text-to-image", "diffusers", "diffusers-training", "rectified-flow"]
GRID_NAME = "samples"  # the card's image: samples.webp (or .png) beside README.md
# where push_checkpoint puts its files in the repo (a loader by repo id should skip it: ignore "checkpoints/*")
CHECKPOINTS_IN_REPO = "checkpoints"
CHECKPOINT_FILES = (CHECKPOINT_FILE, LORA_WEIGHT_NAME, "logs/metrics.jsonl", "logs/train_config.json")
# diffusers' training scripts write the license of the model they fine-tune (creativeml-openrail-m for SD 1.x,
# openrail++ for SDXL, "other" for FLUX.1-dev's own terms). A fluxflow run trains from scratch or on a frozen
# pretrained VAE: the weights' terms follow the data and that VAE, which only the trainer knows. So "other"
# (the Hub's "terms of their own") until they choose one, never a license nobody granted.
DEFAULT_LICENSE = "other"
_SMALL = 64 << 20  # staged files below this size are copied (logs grow in place), larger ones hard-linked

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A fluxflow text-to-image model: a VAE ({{ vae }}), a rectified-flow (flow-matching) transformer over its
latents and a `{{ backbone }}` text encoder{% if base_model %}, built on {{ base_model_links }}{% endif %}.
Trained with `fluxflow-train`.
{% if grid %}
![samples](./{{ grid }})

*Samples at step {{ steps }} (the sample captions of the run).*
{% endif %}
## How to use

```bash
pip install fluxflow
```

```python
from fluxflow import FluxFlowPipeline

pipe = FluxFlowPipeline.from_pretrained({{ location }})
image = pipe({{ caption_literal }}, num_inference_steps=28, guidance_scale=5.0).images[0]
image.save("image.png")
```

## Training

- Data: {{ data_md }}
- Optimizer steps: {{ steps }}
- Image size: {{ size }} px
- Timestep shift: {{ shift }}. Sampling uses diffusers' `FlowMatchEulerDiscreteScheduler` with this shift (in
  `scheduler/scheduler_config.json`), the shift the transformer was trained with.

## License

{{ license_md }}
"""


class HubPushError(RuntimeError):
    """A push to the Hub failed; the local files are kept and the message says how to retry."""


def hub_id(name: str | None) -> str | None:
    """``name`` when it reads as a Hub repo id (``org/name`` or a canonical ``name``) and is no local path or
    ``datasets`` folder builder, else ``None``: what may go into a card's ``datasets`` / ``base_model``."""
    if not name or os.path.exists(name) or name in FOLDER_BUILDERS or not is_repo_id(name):
        return None
    return name


def newest_grid(folder: str | os.PathLike, kind: str = "flow") -> Path | None:
    """The newest ``{kind}_grid_{step:04d}.webp`` in ``folder`` (a samples folder), by step, or ``None``."""
    steps = {}
    for path in Path(folder).glob(f"{kind}_grid_*.webp"):
        step = path.stem[len(kind) + len("_grid_"):]
        if step.isdigit():
            steps[int(step)] = path
    return steps[max(steps)] if steps else None


def model_card(*, name: str, backbone: str, steps: int, data: str | None, size: int, shift: float,
               caption: str, repo_id: str | None = None, folder: str | os.PathLike | None = None,
               data_is_hub_id: bool | None = None, base_model: str | list[str] | None = None,
               grid: str | None = None, vae: str = "FluxFlowVAE", license: str | None = None) -> ModelCard:
    """The card of an exported pipeline. It loads from ``repo_id`` when given (the repo it is pushed to), else
    from ``folder`` (its path on this machine; required then): never a bare run folder name. ``data`` is a Hub
    data set id when ``data_is_hub_id`` (default: when it reads as one, see :func:`hub_id`). ``base_model``:
    Hub id(s) the run started from (a pretrained VAE or checkpoint). ``grid``: the image's file name in the
    folder (the caller writes it). ``license``: a Hub license id, ``"other"`` when not given."""
    if repo_id is None and folder is None:
        raise ValueError("model_card needs repo_id (pushed) or folder (local): where the model loads from")
    location = json.dumps(repo_id or Path(folder).resolve().as_posix())  # a Python string literal
    is_hub_data = bool(data) and (hub_id(data) is not None if data_is_hub_id is None else data_is_hub_id)
    bases = [base_model] if isinstance(base_model, str) else list(base_model or [])
    license = license or DEFAULT_LICENSE
    widget = [{"text": caption, "output": {"url": grid}}] if grid else None
    card_data = ModelCardData(license=license, library_name="diffusers", pipeline_tag="text-to-image",
                              tags=list(TAGS), base_model=(bases[0] if len(bases) == 1 else bases) or None,
                              datasets=[data] if is_hub_data else None, widget=widget)
    if is_hub_data:
        data_md = f"the Hub data set [{data}](https://huggingface.co/datasets/{data})"
    else:
        data_md = f"`{data}`" if data else "not recorded"
    if license == DEFAULT_LICENSE:
        terms = " and ".join([f"the training data ({data_md})"] + [f"`{b}`" for b in bases])
        license_md = (f"Not chosen by the trainer (`license: other`): these weights follow the terms of "
                      f"{terms}. Set `license` in this card's metadata once they are known.")
    else:
        license_md = f"`{license}`."
    links = ", ".join(f"[{b}](https://huggingface.co/{b})" for b in bases)
    literal = json.dumps(caption, ensure_ascii=False)  # a valid Python string literal for the example
    return ModelCard.from_template(
        card_data, template_str=CARD_TEMPLATE, title=repo_id or name, vae=vae, backbone=backbone,
        base_model_links=links, grid=grid, caption=caption, caption_literal=literal, location=location,
        data_md=data_md, steps=steps, size=size, shift=shift, license_md=license_md)


# ------------------------------------------------------------------------------------------------ pushing
def _auth_error(err: HfHubHTTPError, what: str) -> HubPushError | None:
    status = getattr(err.response, "status_code", None)
    if status not in (401, 403):
        return None
    return HubPushError(f"the Hub refused the token ({status}) for {what}: pass a token with write access as "
                        "--hub_token, or log in with `hf auth login` (or set HF_TOKEN)")


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


class HubPusher:
    """One run's model repo on the Hub, made (or found) when created, on the main process only.

    ``repo_id`` defaults to the output folder's name under the token's account, like diffusers' training
    scripts (``create_repo(hub_model_id or Path(output_dir).name, exist_ok=True)``). ``token=None`` is
    huggingface_hub's own (``HF_TOKEN`` or ``hf auth login``)."""

    def __init__(self, output_path: str | os.PathLike, repo_id: str | None = None, token: str | None = None,
                 private: bool = False) -> None:
        self.out = Path(output_path)
        self.api = HfApi(token=token, library_name="fluxflow", library_version=__version__)
        self._token = token or get_token()  # only to keep it out of uploaded files (see _stage)
        self._idle = threading.Event()  # set while no background push is in flight (its callback has run)
        self._idle.set()
        self._lock = threading.Lock()
        self._pushed_step: int | None = None  # the last checkpoint step that reached the Hub
        self._wanted_step: int | None = None  # the last checkpoint step push_checkpoint was asked for
        for old in self.out.glob(".hub-push-*"):  # staging folders of a killed run
            shutil.rmtree(old, ignore_errors=True)
        name = repo_id or self.out.resolve().name
        try:
            self.repo_id = self.api.create_repo(name, private=private, exist_ok=True).repo_id
        except HfHubHTTPError as err:
            raise _auth_error(err, f"creating the repo {name!r}") or HubPushError(
                f"could not create the Hub repo {name!r}: {_first_line(err)}") from err
        logger.info("pushing to the Hub repo %s", self.repo_id)

    # ------------------------------------------------------------------ staging
    def _stage(self, files: dict[str, Path]) -> Path:
        """A folder holding ``{path in repo: local file}``: copies of small files, hard links of large ones
        (written by atomic rename, so a link keeps this version while training writes the next one)."""
        self.out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".hub-push-", dir=self.out))
        for rel, src in files.items():
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.stat().st_size >= _SMALL:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
                continue
            data = src.read_bytes()
            if self._token and self._token.encode() in data:  # belt and braces: never upload the token
                logger.warning("not pushing %s: it contains the Hub token", rel)
                continue
            dst.write_bytes(data)
        return stage

    def _checkpoint_files(self) -> dict[str, Path]:
        """``checkpoint.safetensors``, the metrics and config logs, and the newest grid of each kind."""
        files = {f"{CHECKPOINTS_IN_REPO}/{rel}": self.out / rel for rel in CHECKPOINT_FILES
                 if (self.out / rel).is_file()}
        samples = self.out / "samples"
        for kind in sorted({p.name.partition("_grid_")[0] for p in samples.glob("*_grid_*.webp")}):
            grid = newest_grid(samples, kind)
            if grid is not None:
                files[f"{CHECKPOINTS_IN_REPO}/samples/{grid.name}"] = grid
        return files

    # ------------------------------------------------------------------ pushes
    def push_checkpoint(self, step: int) -> Future | None:
        """Upload the checkpoint files under ``checkpoints/`` in the background (older grids there go) and
        return at once. While the previous push is still running this one is skipped (``None``): the next
        checkpoint, or :meth:`push_final`, sends the newest files. A failure is a warning, never fatal."""
        with self._lock:
            self._wanted_step = step
            if not self._idle.is_set():
                logger.info("step %d: the previous Hub push is still running; this checkpoint is not pushed",
                            step)
                return None
            files = self._checkpoint_files()
            if not files:
                logger.warning("step %d: no checkpoint files in %s to push", step, self.out)
                return None
            stage = None
            try:
                stage = self._stage(files)
                future = self.api.upload_folder(
                    repo_id=self.repo_id, folder_path=stage, run_as_future=True,
                    commit_message=f"fluxflow: checkpoint at step {step}",
                    delete_patterns=[f"{CHECKPOINTS_IN_REPO}/samples/*"])
            except Exception as err:  # staging (a file vanished, disk full) or the executor: not fatal
                logger.warning("step %d: could not start the Hub push: %s", step, _first_line(err))
                if stage is not None:
                    shutil.rmtree(stage, ignore_errors=True)
                return None
            self._idle.clear()
        future.add_done_callback(lambda f: self._pushed(f, step, stage))
        return future

    def _pushed(self, future: Future, step: int, stage: Path) -> None:
        try:
            shutil.rmtree(stage, ignore_errors=True)
            err = future.exception()
            if err is None:
                self._pushed_step = step
                logger.info("step %d: checkpoint pushed to the Hub repo %s", step, self.repo_id)
                return
            auth = _auth_error(err, f"the repo {self.repo_id}") if isinstance(err, HfHubHTTPError) else None
            logger.warning("step %d: pushing the checkpoint to the Hub failed (training goes on): %s", step,
                           auth or _first_line(err))
        finally:
            self._idle.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background push in flight, if any (a failure was logged already); False on timeout."""
        return self._idle.wait(timeout)

    def push_final(self, step: int, pipeline_folder: str | os.PathLike | None = None) -> str:
        """Wait for background pushes, then upload ``pipeline/`` to the repo root in one commit ("fluxflow:
        step N"), with the newest checkpoint files when checkpoint pushing is on and they did not all arrive.
        Blocking; returns the commit URL. Raises :class:`HubPushError` (the local files stay) on failure."""
        self.wait()
        folder = Path(pipeline_folder) if pipeline_folder is not None else self.out / "pipeline"
        if not any((folder / name).is_file() for name in ("model_index.json", "config.json", LORA_WEIGHT_NAME)):
            raise HubPushError(f"nothing to push: {folder} holds no exported pipeline, model or LoRA adapter "
                               f"(model_index.json, config.json, {LORA_WEIGHT_NAME})")
        files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        deletes = None
        if self._wanted_step is not None and self._wanted_step != self._pushed_step:
            files.update(self._checkpoint_files())
            deletes = [f"{CHECKPOINTS_IN_REPO}/samples/*"]
        message, stage = f"fluxflow: step {step}", None
        try:
            stage = self._stage(files)
            info = self.api.upload_folder(repo_id=self.repo_id, folder_path=stage, commit_message=message,
                                          delete_patterns=deletes)
        except Exception as err:
            auth = _auth_error(err, "this push") if isinstance(err, HfHubHTTPError) else None
            retry = f"hf upload {self.repo_id} {folder} . --commit-message {json.dumps(message)}"
            raise HubPushError(f"could not push {folder} to the Hub repo {self.repo_id}: "
                               f"{auth or _first_line(err)}; the files are kept there; retry with `{retry}` "
                               "(after `hf auth login`, or add --token)") from err
        finally:
            if stage is not None:
                shutil.rmtree(stage, ignore_errors=True)
        logger.info("step %d: pipeline pushed to the Hub repo %s", step, self.repo_id)
        return info.commit_url
