"""Checkpoints: ``checkpoint.safetensors`` (all weights) and ``state/checkpoint-<step>/`` (exact resume).

Both are written under a temporary name, fsynced and renamed, so ``latest`` never points at a partial save;
a save that fails (disk full, killed) leaves the previous checkpoint as the latest. The trainer's own state
(steps, data position, schedulers, EMA) is ``run_state.pt`` in the state folder, read back with
``torch.load(weights_only=True)``: loading a checkpoint never runs pickled code. A damaged or refused file is a
one-line error naming it and the previous checkpoint to resume from; what killed writes leave is removed at the
next start (:func:`remove_leftovers`).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
from accelerate.utils import load as accelerate_load
from safetensors import safe_open

from ..atomic import (LIBRARY_WRITE_ERRORS, clean_leftovers, disk_full, fsync_dir, fsync_tree, open_modes,
                      out_of_space, replace_folder, size_on_disk, temp_name)
from ..pipelines.single_file import save_single_file
from .errors import ConfigError

CHECKPOINT_FILE = "checkpoint.safetensors"
STATE_DIR = "state"
RUN_STATE_FILE = "run_state.pt"
_STATE_NAME = re.compile(r"^checkpoint-(\d+)$")
# every folder a run writes into (relative to --output_path), where a kill can leave a temporary file or folder
WRITTEN_FOLDERS = (".", STATE_DIR, "samples", "logs", "logs/graphs", "vae", "pipeline")
# what a save can raise besides OSError: safetensors' and torch.save's own errors hide a full disk's errno
_WRITE_ERRORS = (OSError, *LIBRARY_WRITE_ERRORS)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written; the previous one is kept."""


def state_folders(output_path: str | Path) -> list[Path]:
    """Complete ``state/checkpoint-<step>`` folders, oldest first."""
    return [p for _, p in _checkpoints_in(Path(output_path) / STATE_DIR)]


def _checkpoints_in(root: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of the ``checkpoint-<step>`` folders in ``root``, oldest first (temporary ones have other
    names)."""
    if not root.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STATE_NAME.match(p.name)))


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


def remove_leftovers(output_path: str | Path) -> list[Path]:
    """Delete the temporary files and folders of writes that a kill interrupted, in every folder a run writes
    (only fluxflow's own temporary names, never a complete checkpoint or a user's file); a folder replacement
    killed between its two renames is put back."""
    removed = [p for sub in WRITTEN_FOLDERS for p in clean_leftovers(Path(output_path) / sub)]
    if removed:
        logging.getLogger("fluxflow.train").info("removed %d temporary file(s) of interrupted writes: %s",
                                                 len(removed), ", ".join(str(p) for p in removed))
    return removed


def save_state(accelerator, output_path: str | Path, step: int, run_state: dict,
               total_limit: int | None = None) -> Path:
    """``accelerator.save_state`` (models, optimizers, per-process RNG) plus ``run_state.pt`` (each object's
    ``state_dict()``) into ``state/checkpoint-<step>`` via a temporary folder. Every rank calls this (DeepSpeed
    and FSDP save collectively); then the oldest folders beyond ``total_limit`` go."""
    root = Path(output_path) / STATE_DIR
    final = root / f"checkpoint-{step}"
    tmp = root / temp_name(final.name)
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            torch.save({name: obj.state_dict() for name, obj in run_state.items()}, tmp / RUN_STATE_FILE)
            open_modes(tmp)
            fsync_tree(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(root)
    except _WRITE_ERRORS as err:
        previous = state_folders(output_path)
        full = disk_full(err, root, (size_on_disk(previous[-1]) if previous else 0) - size_on_disk(tmp))
        shutil.rmtree(tmp, ignore_errors=True)  # judged full while the partial folder still took its space
        raise _save_error(output_path, err, final, full, f"the checkpoint of step {step}") from err
    if accelerator.is_main_process and total_limit:
        for old in state_folders(output_path)[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_state(accelerator, folder: str | Path, run_state: dict) -> None:
    """Restore what :func:`save_state` wrote (on any number of processes). A damaged or refused file is a
    :class:`ConfigError` naming it and the previous checkpoint to resume from instead."""
    folder = Path(folder)
    try:
        accelerator.load_state(str(folder))
        rng = folder / f"random_states_{accelerator.process_index}.pkl"
        if rng.is_file():  # Accelerate ignores an unreadable one: the resumed run would silently differ
            _read(rng)
        saved = torch.load(folder / RUN_STATE_FILE, map_location="cpu", weights_only=True)
    except Exception:
        damaged = _damaged_file(folder)
        if damaged is None:
            raise
        raise ConfigError(_damaged_message(folder, *damaged)) from None
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
        target = Path(output_path) / CHECKPOINT_FILE
        try:
            save_single_file(target, unwrapped, scheduler=scheduler, tokenizer=tokenizer, extra=extra)
        except _WRITE_ERRORS as err:  # save_single_file judged a full disk while its partial file was there
            step = (extra or {}).get("global_step")
            raise _save_error(output_path, err, target, out_of_space(err), f"the checkpoint of step {step}") from err
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
    save_folder(folder, model.save_pretrained)


def save_folder(folder: str | Path, write) -> Path:
    """:func:`~fluxflow.atomic.replace_folder` for an exported model folder in the output folder; a failed write
    (disk full) is a :class:`CheckpointError`, the previous folder kept."""
    folder = Path(folder)
    try:
        return replace_folder(folder, write)
    except _WRITE_ERRORS as err:  # replace_folder judged a full disk while its partial folder was there
        raise _save_error(folder.parent, err, folder, out_of_space(err), "the exported model") from err


def _save_error(output_path, err: Exception, target: Path, full: bool, what: str) -> CheckpointError:
    """One line: what could not be saved and why, what is kept, what to do."""
    kept = state_folders(output_path)
    previous = f"the previous checkpoint {kept[-1]} is kept" if kept else "no earlier checkpoint exists"
    if full:
        why = f"no space left on device (the disk holding {target.parent} is full; the partial save was removed)"
        hint = "free some space"
    else:
        why, hint = f"{type(err).__name__}: {_first_line(err)}", "check the output folder"
    return CheckpointError(f"could not save {what} as {target}: {why}; {previous}; {hint}, then resume with "
                           "--resume_from_checkpoint latest")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else "(no message)"


# ------------------------------------------------------------------ damaged state folders
_READABLE = (".safetensors", ".bin", ".pt", ".pkl")


def _read(path: Path) -> None:
    """Read ``path`` as a resume reads it: safetensors (header and extent checked), else ``torch.load`` with
    ``weights_only=True`` and Accelerate's allowed globals (RNG states); raises when damaged or refused."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    else:
        accelerate_load(path, map_location="cpu")


def _damaged_file(folder: Path) -> tuple[Path, Exception] | None:
    """The first file of ``folder`` that cannot be read, with its error (``None`` when all can)."""
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.is_file() and path.suffix in _READABLE:
            try:
                _read(path)
            except Exception as err:
                return path, err
    return None


def _damaged_message(folder: Path, path: Path, err: Exception) -> str:
    """One line: the file, why it cannot be used, and the previous complete checkpoint to resume from instead."""
    return f"{path}: {_why_unreadable(err)}; the checkpoint {folder} is damaged; {_resume_instead(folder)}"


def _why_unreadable(err: Exception) -> str:
    """Refused pickled code, or damage; never a library's advice to load the file with ``weights_only=False``."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "weights only" in text.lower():
        called = re.search(r"GLOBAL ([\w.]+)", text)
        return ("refused, it holds more than tensors and plain values" + (f" (it calls {called.group(1)})" if called
                else "") + "; only those are loaded, so a checkpoint cannot run code")
    detail = _first_line(err).split(". ")[0]
    return "damaged (truncated or corrupt" + ("" if "weights_only" in detail else f": {detail}") + ")"


def _resume_instead(folder: Path) -> str:
    m = _STATE_NAME.match(folder.name)
    earlier = [p for step, p in _checkpoints_in(folder.parent) if p != folder and (m is None or step < int(m[1]))]
    if earlier:
        return f"resume from the previous complete checkpoint instead: --resume_from_checkpoint {earlier[-1]}"
    return f"there is no earlier complete checkpoint: delete {folder} and start the run again"
