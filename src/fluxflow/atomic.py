"""Atomic writes: a file or folder is written under a temporary name, fsynced, then renamed into place.

A reader (or a run resumed after a kill or a power cut) sees the previous version or the new one, never a
half-written one. Every file fluxflow writes for a user goes through here. Temporary names carry a mark
(:func:`temp_name`), so what a kill leaves behind is recognised and removed (:func:`clean_leftovers`) without
ever touching a user's own files.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

MARK = "fluxflow"
_LEFTOVER = re.compile(rf"^\.(?P<name>.+)\.{MARK}(?:-[0-9a-f]+)?\.(?P<kind>tmp|old)$")
FULL_BELOW = 2**20  # less free space than this after a failed write: the disk is full
# what libraries raise for a failed write, without the errno: safetensors' own error, torch.save's RuntimeError
LIBRARY_WRITE_ERRORS = (SafetensorError, RuntimeError)


def temp_name(name: str, kind: str = "tmp", unique: str = "") -> str:
    """The hidden sibling name under which ``name`` is written (``kind="tmp"``) or set aside while a folder is
    replaced (``"old"``): ``.<name>.fluxflow[-<unique>].<kind>``. Writers and :func:`clean_leftovers` share it."""
    return f".{name}.{MARK}{'-' + unique if unique else ''}.{kind}"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; after the block writes it, it is fsynced and renamed onto
    ``path``. On an error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(path)
    try:
        yield tmp
        open_modes(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _new_temp_file(path: Path) -> Path:
    """Create an empty temporary sibling of ``path`` under a new name (as ``mkstemp``, but with the mark)."""
    while True:
        tmp = path.with_name(temp_name(path.name, unique=secrets.token_hex(4)))
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_text_atomically(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def replace_folder(folder: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary sibling folder, which then replaces ``folder`` by renames.

    Between the two renames the previous version is ``.<name>.fluxflow.old``; a write interrupted there is
    repaired by :func:`recover_folder` (called here first, and by :func:`clean_leftovers`)."""
    folder = Path(folder)
    recover_folder(folder)
    tmp, old = _tmp(folder), _old(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        open_modes(tmp)
        fsync_tree(tmp)
    except BaseException as err:
        full = as_disk_full(err, folder)  # judged while the partial folder still takes its space
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise full from err
        raise
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def recover_folder(folder: str | Path) -> None:
    """Put back the previous version of ``folder`` when a replacement was killed between its two renames."""
    folder = Path(folder)
    if not folder.exists() and _old(folder).is_dir():
        os.replace(_old(folder), folder)


def clean_leftovers(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders that killed writes left in ``folder`` (only names of
    :func:`temp_name`); a folder replacement killed between its renames is first put back. Returns what went."""
    folder = Path(folder)
    removed = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _LEFTOVER.match(entry.name)
        if not match:
            continue
        if match["kind"] == "old":
            recover_folder(folder / match["name"])
        if entry.exists() or entry.is_symlink():
            _remove(entry)
            removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def open_modes(path: str | Path) -> None:
    """Give the file ``path``, or the folder and everything under it, the modes a plain ``open()`` and ``mkdir``
    give: 0666 and 0777 less the umask. A temporary file from ``mkstemp`` or a library's own (safetensors writes
    through one) is 0600, which the rename would keep, hiding the file from the user's group."""
    path, mask = Path(path), umask()
    _chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    for root, folders, files in os.walk(path) if path.is_dir() else []:
        for name in folders:
            _chmod(Path(root) / name, 0o777 & ~mask)
        for name in files:
            _chmod(Path(root) / name, 0o666 & ~mask)


def _chmod(path: Path, mode: int) -> None:
    """``os.chmod``, skipped on file systems without modes (SMB, some FUSE mounts): never a reason to fail a save."""
    try:
        os.chmod(path, mode)
    except OSError:
        pass


def umask() -> int:
    """The process's umask, read from Linux's ``/proc`` where it is shown (``os.umask`` can only be read by
    setting it, which races other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_disk_full(err: BaseException, target: str | Path, still_needed: int = 0) -> OSError | None:
    """``OSError(ENOSPC)`` naming ``target`` when a library's ``err`` (which hides the errno) came from a full disk;
    ``None`` for any other error."""
    if not isinstance(err, LIBRARY_WRITE_ERRORS) or not disk_full(err, Path(target).parent, still_needed):
        return None
    lines = str(err).strip().splitlines()
    return OSError(errno.ENOSPC, f"No space left on device ({type(err).__name__}: {lines[0] if lines else ''})",
                   str(target))


def disk_full(err: BaseException, folder: str | Path, still_needed: int = 0) -> bool:
    """Whether ``err``, raised while writing into ``folder``, means the disk is full: ``ENOSPC`` (or a quota)
    anywhere in its chain, or, since safetensors and ``torch.save`` hide the errno ("iostream error", "file write
    failed"), less free space left than the write ``still_needed`` (at least :data:`FULL_BELOW`)."""
    return out_of_space(err) or free_space(folder) < max(still_needed, FULL_BELOW)


def out_of_space(err: BaseException | None) -> bool:
    """``ENOSPC``/``EDQUOT`` (or their message) in ``err`` or the errors it was raised from."""
    for _ in range(16):
        if err is None:
            return False
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err).lower()
        if "no space left on device" in text or "os error 28" in text or "disk quota exceeded" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def free_space(folder: str | Path) -> int:
    """Bytes free for the user in ``folder``'s file system (very large when it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 2**62


def size_on_disk(path: str | Path) -> int:
    """Bytes in the file ``path``, or in every file under the folder ``path`` (0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """fsync every file and folder under ``folder`` (so a rename that publishes it publishes whole files)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(root)


def _tmp(folder: Path) -> Path:
    return folder.with_name(temp_name(folder.name))


def _old(folder: Path) -> Path:
    return folder.with_name(temp_name(folder.name, "old"))
