"""The embedded "shapes" data set: coloured shapes with exact captions, and an analytic judge of both.

Every sample is a pure function of ``(seed, index, size)``: the scene (shapes, colours, grid positions,
background) depends on ``(seed, index)`` only, the size only sets the resolution. Captions read like
``"a red circle in the top left and a blue star on the right on a white background"``. The judge
(``judge_image``) finds each named object by colour and checks its shape (best match among the four
templates) and its cell of the 3x3 grid: prompt adherence as a number, without learned weights.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {  # object colours: far apart, and far from every background
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (240, 210, 40), "purple": (140, 60, 180), "orange": (245, 140, 30),
}
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128)}
# 3x3 grid cells, row-major, with the phrase each takes in a caption.
POSITIONS = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom", "bottom right": "in the bottom right",
}
SUPERSAMPLE = 4  # drawn at 4x and box-filtered down: smooth edges, still deterministic
STAR_INNER = 0.45  # inner/outer radius of the five-pointed star


@dataclass(frozen=True)
class ShapeObject:
    """One object: what, which colour, which grid cell, and its size/offset as fractions of the cell."""

    shape: str
    colour: str
    position: str
    scale: float = 0.75  # box side / cell side
    dx: float = 0.0  # offset of the box centre in [-1, 1] of the cell's free space
    dy: float = 0.0

    @property
    def phrase(self) -> str:
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.shape} {POSITIONS[self.position]}"


@dataclass(frozen=True)
class Scene:
    """A whole image: background colour and one or two objects (different colours and cells)."""

    background: str
    objects: tuple[ShapeObject, ...]

    @property
    def caption(self) -> str:
        return " and ".join(o.phrase for o in self.objects) + f" on a {self.background} background"


def make_scene(seed: int, index: int, second_object_prob: float = 0.3) -> Scene:
    """The scene of sample ``index`` (independent of image size)."""
    rng = np.random.default_rng([seed, index])
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    n = 2 if rng.random() < second_object_prob else 1
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    cells = rng.choice(list(POSITIONS), size=n, replace=False)
    objects = tuple(
        ShapeObject(shape=SHAPES[rng.integers(len(SHAPES))], colour=str(c), position=str(p),
                    scale=float(rng.uniform(0.55, 0.9)), dx=float(rng.uniform(-0.8, 0.8)),
                    dy=float(rng.uniform(-0.8, 0.8)))
        for c, p in zip(colours, cells)
    )
    return Scene(str(background), objects)


def shape_polygon(shape: str, box: tuple[float, float, float, float]) -> list[tuple[float, float]] | None:
    """Vertices of ``shape`` filling the square ``box`` (None for the circle, drawn as an ellipse)."""
    x0, y0, x1, y1 = box
    side, cx = x1 - x0, (x0 + x1) / 2
    if shape == "circle":
        return None
    if shape == "square":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "star":
        r_out = side / (2 * math.sin(math.radians(72)))  # widest points touch the box sides
        height = r_out * (1 + math.cos(math.radians(36)))
        cy = y0 + (side - height) / 2 + r_out
        return [(cx + (r_out if k % 2 == 0 else r_out * STAR_INNER) * math.cos(math.radians(-90 + 36 * k)),
                 cy + (r_out if k % 2 == 0 else r_out * STAR_INNER) * math.sin(math.radians(-90 + 36 * k)))
                for k in range(10)]
    raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box, fill) -> None:
    poly = shape_polygon(shape, box)
    if poly is None:
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon(poly, fill=fill)


def object_box(obj: ShapeObject, size: float) -> tuple[float, float, float, float]:
    """The object's square box in an image of side ``size``: inside its grid cell by construction."""
    cell = size / 3
    row, col = divmod(list(POSITIONS).index(obj.position), 3)
    side = obj.scale * cell
    free = (cell - side) / 2
    cx, cy = (col + 0.5) * cell + obj.dx * free, (row + 0.5) * cell + obj.dy * free
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def render_scene(scene: Scene, size: int) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``size`` x ``size``."""
    big = size * SUPERSAMPLE
    im = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(im)
    for obj in scene.objects:
        draw_shape(draw, obj.shape, object_box(obj, big), COLOURS[obj.colour])
    return im.reduce(SUPERSAMPLE)


def generate_sample(seed: int, index: int, size: int = 64, second_object_prob: float = 0.3):
    """``(image, caption)`` of sample ``index``: a pure function of its arguments."""
    scene = make_scene(seed, index, second_object_prob)
    return render_scene(scene, size), scene.caption


def write_shapes_dataset(out: str | Path, n: int, size: int = 64, seed: int = 0, n_test: int = 0,
                         second_object_prob: float = 0.3) -> Path:
    """Write ``out/train`` (samples ``0..n-1``) and, with ``n_test``, ``out/test`` (the next ``n_test``).

    Each split is an imagefolder: PNGs, ``metadata.jsonl`` (``file_name``, ``text``) and the same captions
    as ``captions.txt`` (``file_name<TAB>caption``), so both data paths can read it.
    """
    if n < 1 or n_test < 0 or size < 8:
        raise ValueError(f"need n >= 1, n_test >= 0 and size >= 8, got n={n}, n_test={n_test}, size={size}")
    out = Path(out)
    for split, start, count in (("train", 0, n), ("test", n, n_test)):
        if count == 0:
            continue
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        width = max(5, len(str(start + count - 1)))
        with open(folder / "metadata.jsonl", "w", encoding="utf-8") as meta, \
                open(folder / "captions.txt", "w", encoding="utf-8") as caps:
            for i in range(start, start + count):
                image, caption = generate_sample(seed, i, size, second_object_prob)
                name = f"{i:0{width}d}.png"
                image.save(folder / name, optimize=False, compress_level=6)
                meta.write(json.dumps({"file_name": name, "text": caption}) + "\n")
                caps.write(f"{name}\t{caption}\n")
    extra = f" --second_object_prob {second_object_prob}" if second_object_prob != 0.3 else ""
    (out / "README.md").write_text(
        "---\nlicense: cc0-1.0\ntask_categories:\n- text-to-image\npretty_name: fluxflow shapes\n---\n"
        f"# shapes\n\nGenerated by `fluxflow-make-dataset shapes --n {n} --size {size} --seed {seed} "
        f"--n_test {n_test}{extra}` (fluxflow.datasets.shapes). Coloured shapes with exact captions; regenerate rather "
        f"than edit. Public domain (CC0): the images are synthetic.\n", encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------------------ judge

_CAPTION = re.compile(
    r"^(?P<objects>.+) on a (?P<background>" + "|".join(BACKGROUNDS) + r") background$")
_OBJECT = re.compile(
    r"^an? (?P<colour>" + "|".join(COLOURS) + r") (?P<shape>" + "|".join(SHAPES) + r") (?P<where>"
    + "|".join(re.escape(p) for p in POSITIONS.values()) + r")$")
MIN_IOU = 0.5  # a blob less like its best rendering than this is no shape at all


def parse_caption(caption: str) -> Scene:
    """The scene a caption describes (sizes and offsets unknown); ``ValueError`` if it is not one of ours."""
    m = _CAPTION.match(caption.strip().lower())
    if not m:
        raise ValueError(f"not a shapes caption: {caption!r}")
    by_phrase = {p: k for k, p in POSITIONS.items()}
    objects = []
    for part in m["objects"].split(" and "):
        o = _OBJECT.match(part)
        if not o:
            raise ValueError(f"not a shapes caption: {caption!r} (cannot read {part!r})")
        objects.append(ShapeObject(o["shape"], o["colour"], by_phrase[o["where"]]))
    return Scene(m["background"], tuple(objects))


@dataclass(frozen=True)
class Verdict:
    """Whether an image shows its caption: each named object's colour, shape and cell, and the background."""

    colour: bool
    shape: bool
    position: bool
    background: bool

    @property
    def ok(self) -> bool:
        return self.colour and self.shape and self.position and self.background


_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
_OBJ_NAMES = list(COLOURS)
_OBJ_RGB = np.array(list(COLOURS.values()), dtype=np.float32)


def _unit_stats(shape: str) -> tuple[float, float, float]:
    """Area of ``shape`` in a unit box, and its centroid's offset from the box centre (shoelace formula)."""
    poly = shape_polygon(shape, (0.0, 0.0, 1.0, 1.0))
    if poly is None:
        return math.pi / 4, 0.0, 0.0
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
        cross = x0 * y1 - x1 * y0
        a, cx, cy = a + cross, cx + (x0 + x1) * cross, cy + (y0 + y1) * cross
    return abs(a) / 2, cx / (3 * a) - 0.5, cy / (3 * a) - 0.5


_UNIT_STATS = {shape: _unit_stats(shape) for shape in SHAPES}
_JUDGE_SUPERSAMPLE = 8


def _coverage(shape: str, box, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Fraction of each pixel of the ``size`` window at ``origin`` that ``shape`` in ``box`` covers."""
    k = _JUDGE_SUPERSAMPLE
    im = Image.new("L", (size[0] * k, size[1] * k), 0)
    x0, y0, x1, y1 = ((v - o) * k for v, o in zip(box, (*origin, *origin)))
    draw_shape(ImageDraw.Draw(im), shape, (x0, y0, x1, y1), 255)
    return np.asarray(im.reduce(k), dtype=np.float32) / 255.0


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected region of ``mask`` (a small flood fill: images here are tiny)."""
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, comp = [(int(y0), int(x0))], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    if not best:
        return None
    out = np.zeros_like(mask, dtype=bool)
    ys, xs = zip(*best)
    out[list(ys), list(xs)] = True
    return out


def _best_shape(alpha: np.ndarray, blob: np.ndarray) -> tuple[str, float]:
    """The shape whose rendering best explains the coverage ``alpha`` around ``blob``, and its soft IoU.

    For each candidate the box follows from the blob's measured area and centroid, so the comparison is
    sub-pixel exact even for shapes only a few pixels wide.
    """
    ys, xs = np.nonzero(blob)
    h, w = alpha.shape
    y0, y1, x0, x1 = max(0, ys.min() - 2), min(h, ys.max() + 3), max(0, xs.min() - 2), min(w, xs.max() + 3)
    region = np.zeros_like(blob)
    region[y0:y1, x0:x1] = True
    a = np.where(region, alpha, 0.0)[y0:y1, x0:x1]
    area = float(a.sum())
    gy, gx = np.mgrid[y0:y1, x0:x1] + 0.5
    cx, cy = float((a * gx).sum() / area), float((a * gy).sum() / area)
    scores = {}
    for shape, (unit_area, ox, oy) in _UNIT_STATS.items():
        side = math.sqrt(area / unit_area)
        bx, by = cx - ox * side, cy - oy * side  # box centre
        box = (bx - side / 2, by - side / 2, bx + side / 2, by + side / 2)
        t = _coverage(shape, box, (x0, y0), (x1 - x0, y1 - y0))
        scores[shape] = float(np.minimum(a, t).sum() / max(1e-6, np.maximum(a, t).sum()))
    shape = max(scores, key=scores.get)
    return shape, scores[shape]


def colour_labels(rgb: np.ndarray) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Background name; per pixel: the object colour covering >= half of it (else -1), best colour, its alpha.

    Each pixel is modelled as a blend ``alpha * colour + (1 - alpha) * background`` (anti-aliased or blurry
    edges are such blends); it belongs to the colour whose blend fits best, when that ``alpha >= 0.5``.
    """
    nearest_bg = ((rgb[:, :, None, :] - _BG_RGB) ** 2).sum(-1).argmin(-1)
    bg = int(np.bincount(nearest_bg.ravel(), minlength=len(_BG_RGB)).argmax())
    b = _BG_RGB[bg]
    d = _OBJ_RGB - b  # [K, 3]
    alpha = np.clip(((rgb - b)[:, :, None, :] * d).sum(-1) / (d * d).sum(-1), 0.0, 1.0)  # [H, W, K]
    residual = ((rgb[:, :, None, :] - (b + alpha[..., None] * d)) ** 2).sum(-1)
    best = residual.argmin(-1)
    alpha = np.take_along_axis(alpha, best[..., None], -1)[..., 0]
    return _BG_NAMES[bg], np.where(alpha >= 0.5, best, -1), best, alpha


def judge_image(image: Image.Image, caption: str) -> Verdict:
    """Check ``image`` against ``caption``: analytic (colour unmixing, template IoU, grid cell)."""
    scene = parse_caption(caption)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    background, labels, best, alpha = colour_labels(rgb)
    min_area = 0.25 * (0.55 * min(h, w) / 3) ** 2 * 0.3  # a quarter of the smallest star we draw
    colour = shape = position = True
    for obj in scene.objects:
        k = _OBJ_NAMES.index(obj.colour)
        blob = _largest_component(labels == k)
        if blob is None or blob.sum() < min_area:
            colour = shape = position = False
            continue
        found, iou = _best_shape(np.where(best == k, alpha, 0.0), blob)
        shape &= found == obj.shape and iou >= MIN_IOU
        ys, xs = np.nonzero(blob)
        cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
        cell = min(2, int(3 * cy / h)) * 3 + min(2, int(3 * cx / w))
        position &= list(POSITIONS)[cell] == obj.position
    return Verdict(colour, shape, position, background == scene.background)


def judge_accuracy(pairs) -> dict[str, float]:
    """Fractions of ``(image, caption)`` pairs whose verdict is fully right, and per attribute."""
    verdicts = [judge_image(im, cap) for im, cap in pairs]
    if not verdicts:
        raise ValueError("judge_accuracy needs at least one (image, caption) pair")
    n = len(verdicts)
    return {"accuracy": sum(v.ok for v in verdicts) / n, "colour": sum(v.colour for v in verdicts) / n,
            "shape": sum(v.shape for v in verdicts) / n, "position": sum(v.position for v in verdicts) / n,
            "background": sum(v.background for v in verdicts) / n, "n": n}


def read_split(folder: str | Path) -> tuple[list[Image.Image], list[str]]:
    """The images and captions of a split written by :func:`write_shapes_dataset` (``metadata.jsonl`` order)."""
    folder = Path(folder)
    with open(folder / "metadata.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [Image.open(folder / r["file_name"]).convert("RGB") for r in rows], [r["text"] for r in rows]


def judge_reconstructions(vae, images: list[Image.Image], captions: list[str], batch: int = 64) -> dict[str, float]:
    """:func:`judge_accuracy` of ``vae``'s reconstructions (posterior mode) of ``images``: the most a flow
    processor that decodes through this VAE can score on these captions, i.e. whether the VAE or the flow
    limits prompt adherence."""
    import torch

    param = next(vae.parameters())
    recon = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1 for im in images[i:i + batch]])
            x = torch.from_numpy(x).permute(0, 3, 1, 2).to(param.device, param.dtype)
            y = ((vae(x).sample.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu()
            recon += [Image.fromarray(a) for a in y.numpy()]
    return judge_accuracy(zip(recon, captions))
