"""Running a pipeline file's stages (``stages.py`` reads and checks them) one after another in one output folder.

Each stage is an ordinary run in ``OUTPUT_PATH/stages/<index>-<name>/`` that starts from the previous stage's
``checkpoint.safetensors`` (its weights, latent statistics and tokenizer). A stage is done when its run
finished: its ``logs/run_end.json`` (written after the final checkpoint and exports) says when and why.
``--resume_from_checkpoint latest`` skips the done stages and resumes the first unfinished one from its own
latest state, so a kill anywhere (inside a stage or between two) neither repeats nor skips a stage. A stage
stopped by SIGTERM / Ctrl+C is not done, and the next one does not start. After each stage the top of the
output folder gets a copy of its ``checkpoint.safetensors``, ``vae/`` and ``pipeline/``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..atomic import atomic_path, write_text_atomically
from ..pipelines.lora import LORA_WEIGHT_NAME
from .checkpoint import CHECKPOINT_FILE, remove_leftovers, save_folder, state_folders
from .config import TrainConfig
from .errors import ConfigError
from .lora import LORA_FOLDER
from .signals import StopSignal
from .stages import Stage
from .trainer import RUN_END, train

logger = logging.getLogger("fluxflow.train")

PLAN_FILE = "plan.json"  # in OUTPUT_PATH/stages/: the stage names a run started with
COPIED = (CHECKPOINT_FILE, "vae", "pipeline", LORA_WEIGHT_NAME, LORA_FOLDER)  # the top keeps the latest stage's


def run_stages(top: TrainConfig, stages: list[Stage], stop: StopSignal) -> Path:
    """Train ``stages`` in order (every process calls this); returns the output folder. Stops after a stage
    that a signal stopped (resume it with ``--resume_from_checkpoint latest``)."""
    try:
        return _run_stages(top, stages, stop)
    finally:
        if (state := _processes()) is not None:
            state.destroy_process_group()


def _run_stages(top: TrainConfig, stages: list[Stage], stop: StopSignal) -> Path:
    root = Path(top.output_path)
    if _is_main_process():
        remove_leftovers(root)  # a copy to the top that a kill interrupted
    _check_start(root, stages, resuming=bool(top.resume_from_checkpoint))
    for stage in stages:
        end = stage_end(stage)
        if end is not None:
            _say(logging.INFO, "stage %d '%s': done at step %d (%s)", stage.index, stage.name, end["step"],
                 end["reason"])
        elif _stopped(stop):  # stopped between two stages: the next one does not start
            _say(logging.WARNING, "%s: stopped before stage %d '%s'; continue with the same command plus "
                 "--resume_from_checkpoint latest", stop.name, stage.index, stage.name)
            return root
        else:
            _say(logging.INFO, "stage %d '%s': %s", stage.index, stage.name,
                 "resuming" if state_folders(stage.folder) else "starting")
            train(_stage_config(stage, root, last=stage is stages[-1]), stage.optim, stop, end_processes=False)
            _reset_accelerate()
            if _stopped(stop) or stage_end(stage) is None:
                _say(logging.WARNING, "stage %d '%s' stopped before its end; the next stage does not start. "
                     "Continue with the same command plus --resume_from_checkpoint latest", stage.index, stage.name)
                return root
        _publish(root, stage)
    _say(logging.INFO, "all %d stages done; the last stage's models are in %s", len(stages), root)
    return root


def stage_end(stage: Stage) -> dict | None:
    """``{"step", "reason"}`` of a finished stage, ``None`` while it is not finished."""
    path = stage.folder / "logs" / RUN_END
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _check_start(root: Path, stages: list[Stage], resuming: bool) -> None:
    """A new pipeline run refuses a folder holding another one's stages; a resumed one must have the same
    stages as the run it continues (names in order, recorded in ``stages/plan.json`` at the first start)."""
    plan_path, names = root / "stages" / PLAN_FILE, [s.folder.name for s in stages]
    before = json.loads(plan_path.read_text(encoding="utf-8"))["stages"] if plan_path.is_file() else None
    _wait_for_everyone()  # every process has read it before the main process writes it
    if before is not None:
        if not resuming:
            raise ConfigError(f"--output_path {str(root)!r} holds an earlier pipeline run (stages "
                              f"{', '.join(before)}); continue it with --resume_from_checkpoint latest, or choose "
                              "another --output_path")
        if before != names:
            raise ConfigError(f"--resume_from_checkpoint: the run in {str(root)!r} has the stages "
                              f"{', '.join(before)}, this file has {', '.join(names)}; resume with the file it "
                              "started with")
    elif _is_main_process():
        write_text_atomically(plan_path, json.dumps({"stages": names}, indent=1) + "\n")


def _stage_config(stage: Stage, root: Path, last: bool) -> TrainConfig:
    """The stage's run (from the previous stage's weights: ``stages.py`` set its ``model_checkpoint``), resumed
    from its own latest state when it has one. ``--push_to_hub`` shares the last stage's model, in a repo named
    after the whole run."""
    cfg = stage.cfg
    cfg.resume_from_checkpoint = "latest" if state_folders(stage.folder) else None
    if cfg.push_to_hub:
        cfg.push_to_hub, cfg.hub_push_checkpoints = last, cfg.hub_push_checkpoints and last
        cfg.hub_model_id = cfg.hub_model_id or root.resolve().name
    return cfg


def _publish(root: Path, stage: Stage) -> None:
    """Copy the stage's models to the top of the output folder (atomically: a kill leaves the old or the new)."""
    if not _is_main_process():
        return
    for name in COPIED:
        source, target = stage.folder / name, root / name
        if source.is_file():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        elif source.is_dir():
            save_folder(target, lambda tmp, source=source: shutil.copytree(source, tmp, dirs_exist_ok=True))


def _reset_accelerate() -> None:
    """Forget the finished stage's Accelerate settings (mixed precision, accumulation); the processes and their
    group stay for the next stage (ended in :func:`run_stages`)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def _processes():
    """Accelerate's process state under a launcher (made as ``Accelerator`` makes it: ``ACCELERATE_USE_CPU``
    read), ``None`` in a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def _wait_for_everyone() -> None:
    if (state := _processes()) is not None:
        state.wait_for_everyone()


def _stopped(stop: StopSignal) -> bool:
    """Whether a signal stopped the run: the main process decides for all (none starts a stage alone)."""
    from accelerate.utils import broadcast_object_list

    decision = [stop.received is not None]
    if _processes() is not None:
        broadcast_object_list(decision)
    return decision[0]


def _say(level: int, message: str, *args) -> None:
    """A log line of the pipeline, once (from the main process)."""
    if _is_main_process():
        logger.log(level, message, *args)


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"
