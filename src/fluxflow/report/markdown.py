"""The model card's markdown as HTML for the report page: headings, paragraphs, lists, code, links and images
(files inside the pipeline folder embedded, anything else shown as text); every piece of text escaped."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

esc = html.escape
IMAGE_TYPES = {".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif"}


def data_uri(path: Path) -> str:
    """The file's bytes as they are, in a ``data:`` URI (the page embeds every image it shows)."""
    mime = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def markdown(text: str, folder: Path) -> str:
    """A minimal markdown: headings, fenced code, bullet lists and paragraphs with inline code, link texts and
    images (embedded when the file is inside ``folder``). Everything else is escaped text."""
    out, para, code = [], [], None

    def flush():
        if para and all(re.match(r"[-*] ", line) for line in para):
            out.append("<ul>" + "".join(f"<li>{_inline(line[2:], folder)}</li>" for line in para) + "</ul>")
        elif para:
            out.append(f"<p>{_inline(' '.join(para), folder)}</p>")
        para.clear()

    for line in text.splitlines():
        if code is not None and not line.startswith("```"):
            code.append(line)
        elif line.startswith("```"):
            flush()
            if code is not None:
                out.append(f"<pre><code>{esc(chr(10).join(code))}</code></pre>")
            code = [] if code is None else None
        elif heading := re.match(r"(#{1,6})\s+(.*)", line):
            flush()
            level = min(6, len(heading[1]) + 2)  # below the page's own h1/h2
            out.append(f"<h{level}>{_inline(heading[2], folder)}</h{level}>")
        elif line.strip():
            para.append(line.strip())
        else:
            flush()
    flush()
    if code is not None:  # a fence left open
        out.append(f"<pre><code>{esc(chr(10).join(code))}</code></pre>")
    return "\n".join(out)


_INLINE = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]*)[^)]*\)|`([^`]+)`")


def _inline(text: str, folder: Path) -> str:
    out, at = [], 0
    for m in _INLINE.finditer(text):
        out.append(esc(text[at:m.start()]))
        at = m.end()
        if m[4] is not None:
            out.append(f"<code>{esc(m[4])}</code>")
        elif m[1]:
            out.append(_image(m[2], m[3], folder))
        else:  # a link: its text only, with the target shown as text (the page references nothing)
            out.append(f'{esc(m[2])} <span class="url">({esc(m[3])})</span>' if m[3] else esc(m[2]))
    return "".join(out) + esc(text[at:])


def _image(alt: str, src: str, folder: Path) -> str:
    """An image file inside ``folder``, embedded; anything else (a URL, a file outside) only named."""
    try:
        path = (folder / src).resolve() if src and "://" not in src and not src.startswith("data:") else None
        embed = path and path.suffix.lower() in IMAGE_TYPES and path.is_relative_to(folder.resolve())
        if embed and path.is_file():
            return f'<img class="card-image" alt="{esc(alt)}" src="{data_uri(path)}">'
    except (OSError, ValueError):  # an unreadable file, a path with a NUL
        pass
    return f'<span class="missing">[image: {esc(alt or src)}]</span>'
