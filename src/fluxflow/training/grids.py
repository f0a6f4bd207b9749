"""One grid image per kind at each sample point, beside the reference-named sample files (which stay as they
are): ``samples/vae_grid_{step:04d}.webp`` (each test image next to its reconstructions) and
``samples/flow_grid_{step:04d}.webp`` (the flow samples, captions as labels). Trackers and the report page
show these; ``diffusers.utils.make_image_grid`` lays them out.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from diffusers.utils import make_image_grid
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path

GRID_KINDS = ("vae", "flow")
MIN_CELL = 128  # small images are enlarged (nearest neighbour: pixels stay visible) so labels fit beside them
VAE_COLUMNS = ("input", "-ctx", "-nc")  # what each row of the VAE grid shows: input, with and without context


def grid_path(folder: str | Path, kind: str, step: int) -> Path:
    return Path(folder) / f"{kind}_grid_{step:04d}.webp"


def _enlarged(image: Image.Image, side: int) -> Image.Image:
    image = image.convert("RGB")
    scale = max(1, -(-side // max(image.size)))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image


def _labelled(image: Image.Image, label: str, width_chars: int) -> Image.Image:
    """``image`` above a white strip holding ``label``, wrapped to the image's width."""
    font = ImageFont.load_default()
    lines = textwrap.wrap(label, width=width_chars)[:4] or [""]
    line_height = 12
    cell = Image.new("RGB", (image.width, image.height + line_height * len(lines) + 4), "white")
    cell.paste(image, (0, 0))
    draw = ImageDraw.Draw(cell)
    for i, line in enumerate(lines):
        draw.text((2, image.height + 2 + i * line_height), line, fill="black", font=font)
    return cell


def _same_size(cells: list[Image.Image]) -> list[Image.Image]:
    """``make_image_grid`` takes equal cells: pad each to the largest width and height (white)."""
    width, height = max(c.width for c in cells), max(c.height for c in cells)
    out = []
    for c in cells:
        padded = Image.new("RGB", (width, height), "white")
        padded.paste(c, (0, 0))
        out.append(padded)
    return out


def vae_grid(rows: list[dict[str, Image.Image]]) -> Image.Image:
    """One row per test image: its input, the reconstruction with SPADE context, and without."""
    side = max(MIN_CELL, max(max(im.size) for row in rows for im in row.values()))
    names = {"input": "input", "-ctx": "with context", "-nc": "no context"}
    cells = [_labelled(_enlarged(row[column], side), names[column], side // 6)
             for row in rows for column in VAE_COLUMNS]
    return make_image_grid(_same_size(cells), rows=len(rows), cols=len(VAE_COLUMNS))


def flow_grid(images: list[Image.Image], captions: list[str], columns: int = 4) -> Image.Image:
    """The flow samples in rows of ``columns``, each captioned (empty cells pad the last row)."""
    side = max(MIN_CELL, max(max(im.size) for im in images))
    cells = [_labelled(_enlarged(im, side), caption, side // 6) for im, caption in zip(images, captions)]
    cols = min(columns, len(cells))
    rows = -(-len(cells) // cols)
    cells = _same_size(cells)
    cells += [Image.new("RGB", cells[0].size, "white")] * (rows * cols - len(cells))
    return make_image_grid(cells, rows=rows, cols=cols)


def save_grid(grid: Image.Image, folder: str | Path, kind: str, step: int) -> Path:
    """Write ``grid`` as lossless WebP, atomically (like the sample files beside it)."""
    path = grid_path(folder, kind, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="WEBP", lossless=True)
    return path
