"""The ``--data_path DIR --captions_file FILE`` source: the captions file and the records it names.

Format (UTF-8, one sample per line): ``file_name<TAB>caption``. The line is split at its *first* tab only,
so a caption may itself contain tabs. Blank lines and lines starting with ``#`` are ignored; Windows line
ends and a byte-order mark are tolerated. ``file_name`` is relative to ``--data_path`` (subfolders allowed,
``..`` out of it not). Lines end at LF, CR or CRLF only: other Unicode line separators (U+2028, NEL, form
feed) are part of the caption, not the end of the line.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from fluxflow.training.data.images import BadSample
from fluxflow.training.data.skips import DataError, SkipLog, strict_error
from fluxflow.training.errors import ConfigError


@dataclass(frozen=True)
class CaptionLine:
    """One sample of a captions file: where it was (for messages), the image name and the caption.

    ``problem`` is set for a line that cannot be used as text (not UTF-8): it is a bad sample, not an error
    for the whole file, so one stray byte does not stop a run.
    """

    line: int
    file_name: str
    caption: str
    problem: str = ""


def read_captions_file(path: str | Path) -> list[CaptionLine]:
    """Parse a captions file; a file that is not UTF-8 at all (UTF-16, say) or has no TAB on any line fails
    with its name.

    A single line that is not UTF-8 comes back with ``problem`` set (its name decoded with replacement
    characters, for messages); when every line is like that, the file is simply not UTF-8.
    """
    path = Path(path)
    data = path.read_bytes()
    wide = encoding_problem(path, data)
    if wide:
        raise ConfigError(wide)
    data = data.removeprefix(b"\xef\xbb\xbf")
    out: list[CaptionLine] = []
    first_error = None
    # bytes.splitlines() splits at LF, CR and CRLF only; str.splitlines() would also split a caption at
    # U+2028, NEL or a form feed and turn its tail into a bogus line.
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line, problem = raw.decode("utf-8"), ""
        except UnicodeDecodeError as e:
            first_error = first_error or e
            line, problem = raw.decode("utf-8", "replace"), f"not UTF-8 ({e.reason} at byte {e.start})"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, tab, caption = line.partition("\t")
        out.append(CaptionLine(number, name.strip(), caption.strip() if tab else "", problem))
    if out and all(cl.problem for cl in out):
        raise ConfigError(f"--captions_file {str(path)!r} is not UTF-8 text ({first_error}); convert it from its "
                          f"encoding, e.g. iconv -f LATIN1 -t UTF-8 {str(path)!r} > captions-utf8.txt")
    if out and b"\t" not in data:
        raise ConfigError(f"--captions_file {str(path)!r}: no line has a TAB; expected "
                          f"'file_name<TAB>caption' per line (first line: {out[0].file_name!r})")
    return out


def encoding_problem(path: str | Path, head: bytes | None = None) -> str | None:
    """The error for a captions file in UTF-16 or UTF-32 (from its first bytes, ``head`` or read) or one that
    cannot be read, or None.

    For ``DataConfig.validate`` (before any model is built) and the reader itself.
    """
    if head is None:
        try:
            with open(path, "rb") as f:
                head = f.read(_SAMPLE)
        except OSError as e:
            return f"--captions_file {str(path)!r} cannot be read: {e}"
    wide = wide_encoding(head)
    if not wide:
        return None
    return (f"--captions_file {str(path)!r} is not UTF-8: it is {wide}; convert it, e.g. "
            f"iconv -f {wide.split()[0]} -t UTF-8 {str(path)!r} > captions-utf8.txt")


_SAMPLE = 1 << 16  # bytes looked at to tell UTF-16 without a byte-order mark


def wide_encoding(data: bytes, sample: int = _SAMPLE) -> str:
    """``"UTF-16 (little-endian, with a byte-order mark)"`` and the like when ``data`` is UTF-16 (or, with
    its byte-order mark, UTF-32) text; else "".

    UTF-8 decodes such a file without error (its NUL bytes are valid UTF-8), into names full of NULs that
    are all "missing": it must be recognised up front. A byte-order mark says it outright (FF and FE never
    occur in UTF-8); without one, text whose first ``sample`` bytes hold NULs and decode as UTF-16 into
    text with a TAB or a line end and no NUL is UTF-16 (a stray NUL in a UTF-8 line is not).
    """
    boms = ((b"\xff\xfe\0\0", "UTF-32 (little"), (b"\0\0\xfe\xff", "UTF-32 (big"),
            (b"\xff\xfe", "UTF-16 (little"), (b"\xfe\xff", "UTF-16 (big"))
    for bom, what in boms:
        if data.startswith(bom):
            return f"{what}-endian, with a byte-order mark)"
    head = data[:min(len(data), sample) // 2 * 2]
    if b"\0" not in head:
        return ""
    for codec, order in (("utf-16-le", "little"), ("utf-16-be", "big")):
        text = head.decode(codec, "replace")
        if "\0" not in text and ("\t" in text or "\n" in text) and text.count("\ufffd") <= 1:
            return f"UTF-16 ({order}-endian, without a byte-order mark)"
    return ""


class FolderRecords:
    """The usable lines of a captions file, with the cheap checks done up front.

    Missing files, zero-byte files and empty captions are found here without decoding anything: they are
    left out and kept in ``problems``, and counted in ``skips`` unless ``strict``: then the data set's
    ``verify()`` reports them together with the images that fail to decode, in one ``DataError``.
    """

    def __init__(self, data_path: str | Path, captions_file: str | Path, skips: SkipLog,
                 strict: bool) -> None:
        self.root = Path(data_path)
        lines = read_captions_file(captions_file)
        if not lines:
            raise DataError(f"--captions_file {str(captions_file)!r} has no samples (only blank or # lines)")
        problems: list[BadSample] = []
        self.lines: list[CaptionLine] = []
        existing = 0
        for cl in lines:
            bad = self._check(cl)
            existing += bad is None or bad.kind != "missing"
            if bad is None:
                self.lines.append(cl)
            else:
                problems.append(bad)
        if existing == 0:
            raise DataError(
                f"--captions_file {str(captions_file)!r} names {len(lines)} images but none exists under "
                f"--data_path {str(self.root)!r} (first: {lines[0].file_name!r}, line {lines[0].line})"
            )
        self.problems, self.n_named = problems, len(lines)
        skips.n_named = self.n_named  # the tally's total: every line named, the ones left out included
        if strict and not self.lines:
            raise strict_error(problems, len(lines))
        for bad in [] if strict else problems:
            skips.record(bad)
        if not self.lines:
            raise DataError(f"--captions_file {str(captions_file)!r}: no usable sample; {skips.summary()}")

    def _check(self, cl: CaptionLine) -> BadSample | None:
        where = _where(cl)
        if cl.problem:
            return BadSample("unreadable", where, cl.problem)
        path = self.root / cl.file_name
        # Judged on the written name, not on resolved links: a folder of symlinks into a shared store is fine.
        rel = os.path.relpath(path, self.root) if cl.file_name else os.curdir
        if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
            return BadSample("missing", where, f"not a file name under --data_path {str(self.root)!r}")
        try:
            st = path.stat()
        except OSError as e:  # no such file, a dangling link, a name too long for the file system, ...
            gone = e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP)
            return BadSample("missing" if gone else "unreadable", where,
                             f"not found under {self.root}" if gone else str(e))
        except ValueError:  # a NUL byte in the name
            return BadSample("missing", where, "not a valid file name")
        if not stat.S_ISREG(st.st_mode):
            return BadSample("missing", where, "a directory or special file, not an image file")
        if st.st_size == 0:
            return BadSample("zero_byte", where)
        if not cl.caption:
            return BadSample("empty_caption", where)
        return None

    def __len__(self) -> int:
        return len(self.lines)

    def raw(self, i: int) -> tuple[str, str, str]:
        """``(path, caption, name)`` of record ``i``."""
        cl = self.lines[i]
        return str(self.root / cl.file_name), cl.caption, _where(cl)


def _where(cl: CaptionLine, limit: int = 120) -> str:
    """``"name (line N)"`` for messages; a very long name (a caption line without its TAB) is shortened."""
    name = cl.file_name if len(cl.file_name) <= limit else f"{cl.file_name[:limit]}..."
    return f"{name} (line {cl.line})"

