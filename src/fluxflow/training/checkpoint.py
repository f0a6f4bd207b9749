"""Checkpoints: ``checkpoint.safetensors`` (all weights) and ``state/checkpoint-<step>/`` (exact resume).

Both are written under a temporary name and renamed, so ``latest`` never points at a partial save.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..pipelines.single_file import save_single_file

CHECKPOINT_FILE = "checkpoint.safetensors"
STATE_DIR = "state"
_STATE_NAME = re.compile(r"^checkpoint-(\d+)$")


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
    return Path(resume)


def save_state(accelerator, output_path: str | Path, step: int, total_limit: int | None = None) -> Path:
    """``accelerator.save_state`` into ``state/checkpoint-<step>`` via a temporary folder (every rank calls
    this: DeepSpeed and FSDP save collectively); then the oldest folders beyond ``total_limit`` go."""
    root = Path(output_path) / STATE_DIR
    final, tmp = root / f"checkpoint-{step}", root / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        if total_limit:
            for old in state_folders(output_path)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_weights(accelerator, output_path: str | Path, models: dict, tokenizer=None, scheduler=None,
                 extra: dict | None = None):
    """All weights and their configs in ``checkpoint.safetensors`` (main process, atomic)."""
    if accelerator.is_main_process:
        unwrapped = {name: accelerator.unwrap_model(m) for name, m in models.items()}
        save_single_file(Path(output_path) / CHECKPOINT_FILE, unwrapped, scheduler=scheduler, tokenizer=tokenizer,
                         extra=extra)
    accelerator.wait_for_everyone()


def write_folder_atomically(folder: str | Path, write) -> Path:
    """``write(tmp)`` fills a temporary sibling folder, which then replaces ``folder`` by renames: readers see
    the old folder or the new one, never a half-written one."""
    folder = Path(folder)
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def save_model_folder(model, folder: str | Path) -> None:
    """``model.save_pretrained(folder)``, atomically."""
    write_folder_atomically(folder, model.save_pretrained)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
