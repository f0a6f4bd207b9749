"""The ``--data_path DIR --captions_file FILE`` source: the captions file and the records it names.

Format (UTF-8, one sample per line): ``file_name<TAB>caption``. The line is split at its *first* tab only,
so a caption may itself contain tabs. Blank lines and lines starting with ``#`` are ignored; Windows line
ends and a byte-order mark are tolerated. ``file_name`` is relative to ``--data_path`` (subfolders allowed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fluxflow.training.data.images import BadSample
from fluxflow.training.data.skips import DataError, SkipLog
from fluxflow.training.errors import ConfigError


@dataclass(frozen=True)
class CaptionLine:
    """One sample of a captions file: where it was (for messages), the image name and the caption."""

    line: int
    file_name: str
    caption: str


def read_captions_file(path: str | Path) -> list[CaptionLine]:
    """Parse a captions file; a file that is not UTF-8 or has no TAB on any line fails with its name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"--captions_file {str(path)!r} is not UTF-8 text ({e})") from None
    out: list[CaptionLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, tab, caption = line.partition("\t")
        out.append(CaptionLine(number, name.strip(), caption.strip() if tab else ""))
    if out and not any("\t" in raw for raw in text.splitlines()):
        raise ConfigError(f"--captions_file {str(path)!r}: no line has a TAB; expected "
                          f"'file_name<TAB>caption' per line (first line: {out[0].file_name!r})")
    return out


class FolderRecords:
    """The usable lines of a captions file, with the cheap checks done up front.

    Missing files, zero-byte files and empty captions are found here without decoding anything: they are
    counted in ``skips`` and left out (or, with ``strict``, reported together as one ``DataError``).
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
        if problems and strict:
            raise strict_error(problems, len(lines))
        for bad in problems:
            skips.record(bad)
        if not self.lines:
            raise DataError(f"--captions_file {str(captions_file)!r}: no usable sample; "
                            f"{skips.summary(len(lines))}")
        self.n_named = len(lines)

    def _check(self, cl: CaptionLine) -> BadSample | None:
        where = f"{cl.file_name} (line {cl.line})"
        path = self.root / cl.file_name
        if not path.is_file():
            return BadSample("missing", where, f"not found under {self.root}")
        if path.stat().st_size == 0:
            return BadSample("zero_byte", where)
        if not cl.caption:
            return BadSample("empty_caption", where)
        return None

    def __len__(self) -> int:
        return len(self.lines)

    def raw(self, i: int) -> tuple[str, str, str]:
        """``(path, caption, name)`` of record ``i``."""
        cl = self.lines[i]
        return str(self.root / cl.file_name), cl.caption, f"{cl.file_name} (line {cl.line})"


def strict_error(problems: list[BadSample], n_total: int, shown: int = 10) -> DataError:
    """One error listing the first ``shown`` bad samples, for ``--strict_data``."""
    lines = "\n".join(f"  - {p}" for p in problems[:shown])
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return DataError(f"--strict_data: {len(problems)} of {n_total} samples are bad:\n{lines}{more}")
