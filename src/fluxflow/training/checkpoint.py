"""Checkpoints: ``checkpoint.safetensors`` (all weights) and ``state/checkpoint-<step>/`` (exact resume).

Both are written under a temporary name, fsynced and renamed, so ``latest`` never points at a partial save;
a save that fails (disk full, killed) leaves the previous checkpoint as the latest. The trainer's own state
(steps, data position, schedulers, EMA) is ``run_state.pt`` in the state folder, read back with
``torch.load(weights_only=True)``: loading a checkpoint never runs pickled code.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import shutil
import time
from pathlib import Path

import torch

from ..atomic import fsync_dir, fsync_tree, replace_folder
from ..pipelines.single_file import save_single_file
from .errors import ConfigError

CHECKPOINT_FILE = "checkpoint.safetensors"
STATE_DIR = "state"
RUN_STATE_FILE = "run_state.pt"
_STATE_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written; the previous one is kept."""


def state_folders(output_path: str | Path) -> list[Path]:
    """Complete ``state/checkpoint-<step>`` folders, oldest first."""
    root = Path(output_path) / STATE_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STATE_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_resume(output_path: str | Path, resume: str | None) -> Path | None:
    """The state folder to resume from: ``latest`` (``None`` when there is none yet) or a given folder."""
    if not resume:
        return None
    if resume == "latest":
        folders = state_folders(output_path)
        return folders[-1] if folders else None
    folder = Path(resume)
    if not (folder / RUN_STATE_FILE).is_file():
        raise ConfigError(f"--resume_from_checkpoint {resume}: not a complete state/checkpoint-* folder (no "
                          f"{RUN_STATE_FILE})")
    return folder


def remove_leftovers(output_path: str | Path) -> None:
    """Delete the temporary files and folders of saves that a kill interrupted (never a complete checkpoint)."""
    for folder in (Path(output_path), Path(output_path) / STATE_DIR):
        for leftover in folder.glob(".*.tmp") if folder.is_dir() else []:
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()


def set_aside_earlier_state(output_path: str | Path, continuing: bool) -> None:
    """A new run (no ``--resume_from_checkpoint``) in a folder holding an earlier run's state folders: with
    ``--model_checkpoint``/``--preserve_lr`` (continuing from weights, the earlier release's way) the old
    ``state/`` moves to ``state.before-<time>/``, with the run's ``logs/metrics.jsonl`` (which the new run starts
    afresh), so nothing is overwritten; otherwise it is an error."""
    folders = state_folders(output_path)
    if not folders:
        return
    if not continuing:
        raise ConfigError(f"--output_path {output_path} holds the checkpoints of an earlier run (up to "
                          f"{folders[-1].name}): continue it with --resume_from_checkpoint latest, or choose another "
                          "--output_path")
    root = Path(output_path) / STATE_DIR
    aside = root.with_name(f"{STATE_DIR}.before-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(root, aside)
    metrics = Path(output_path) / "logs" / "metrics.jsonl"
    if metrics.exists():
        os.replace(metrics, aside / metrics.name)
    logging.getLogger("fluxflow.train").warning("the earlier run's state folders and metrics moved to %s", aside)


def save_state(accelerator, output_path: str | Path, step: int, run_state: dict,
               total_limit: int | None = None) -> Path:
    """``accelerator.save_state`` (models, optimizers, per-process RNG) plus ``run_state.pt`` (each object's
    ``state_dict()``) into ``state/checkpoint-<step>`` via a temporary folder. Every rank calls this (DeepSpeed
    and FSDP save collectively); then the oldest folders beyond ``total_limit`` go."""
    root = Path(output_path) / STATE_DIR
    final, tmp = root / f"checkpoint-{step}", root / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            torch.save({name: obj.state_dict() for name, obj in run_state.items()}, tmp / RUN_STATE_FILE)
            fsync_tree(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _save_error(output_path, step, err) from err
    if accelerator.is_main_process and total_limit:
        for old in state_folders(output_path)[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_state(accelerator, folder: str | Path, run_state: dict) -> None:
    """Restore what :func:`save_state` wrote (on any number of processes)."""
    accelerator.load_state(str(folder))
    try:
        saved = torch.load(Path(folder) / RUN_STATE_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(f"{Path(folder) / RUN_STATE_FILE}: refused, it holds more than tensors and plain values "
                          f"(only those are loaded, so a checkpoint cannot run code): {str(err).splitlines()[0]}"
                          ) from None
    missing = set(run_state) - set(saved)
    if missing:
        raise ConfigError(f"{folder}: the saved state has no {sorted(missing)}; it is from a run with other "
                          f"training options (saved: {sorted(saved)})")
    for name, obj in run_state.items():
        obj.load_state_dict(saved[name])


def save_weights(accelerator, output_path: str | Path, models: dict, tokenizer=None, scheduler=None,
                 extra: dict | None = None):
    """All weights and their configs in ``checkpoint.safetensors`` (main process, atomic)."""
    if accelerator.is_main_process:
        unwrapped = {name: accelerator.unwrap_model(m) for name, m in models.items()}
        try:
            save_single_file(Path(output_path) / CHECKPOINT_FILE, unwrapped, scheduler=scheduler,
                             tokenizer=tokenizer, extra=extra)
        except OSError as err:
            raise _save_error(output_path, (extra or {}).get("global_step"), err) from err
    accelerator.wait_for_everyone()


def check_free_space(output_path: str | Path, models: dict, optimizer_copies: int = 2) -> None:
    """Fail at the start, not at the first save, when the output folder cannot hold two checkpoints (the
    previous one is kept until the next is complete). Estimate: weights in the single file and the state
    folder, plus ``optimizer_copies`` (Adam moments) for each trained parameter."""
    weights = sum(p.numel() * p.element_size() for m in models.values() for p in m.parameters())
    trained = sum(p.numel() * p.element_size() for m in models.values() for p in m.parameters() if p.requires_grad)
    needed = 2 * (2 * weights + optimizer_copies * trained)
    Path(output_path).mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(Path(output_path)).free
    if free < needed:
        raise ConfigError(f"--output_path {output_path}: {free / 2**20:.0f} MiB free, but two checkpoints of this "
                          f"run need about {needed / 2**20:.0f} MiB; free some space or choose another folder")


def save_model_folder(model, folder: str | Path) -> None:
    """``model.save_pretrained(folder)``, atomically."""
    replace_folder(folder, model.save_pretrained)


def _save_error(output_path, step, err: OSError) -> CheckpointError:
    kept = state_folders(output_path)
    previous = f"the previous checkpoint {kept[-1]} is kept" if kept else "no earlier checkpoint exists"
    hint = "the disk is full; free some space" if err.errno == errno.ENOSPC else "check the output folder"
    return CheckpointError(f"could not save the checkpoint of step {step} under {output_path}: {err}; {previous}; "
                           f"{hint}, then resume with --resume_from_checkpoint latest")
