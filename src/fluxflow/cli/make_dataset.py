"""``fluxflow-make-dataset``: write an embedded data set to disk as an imagefolder (+ captions file).

    fluxflow-make-dataset shapes --n 5000 --size 64 --out data/shapes [--seed 0] [--n_test 500]
    fluxflow-make-dataset judge data/shapes/test          # judge a folder of images against its captions

Training then reads it like any real data: ``--data_path data/shapes/train`` (imagefolder) or
``--data_path data/shapes/train --captions_file data/shapes/train/captions.txt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fluxflow-make-dataset",
                                     description="Write fluxflow's embedded captioned data sets to disk.")
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="{shapes,judge}")
    shapes = sub.add_parser("shapes", help="coloured shapes with exact captions (deterministic from --seed)")
    shapes.add_argument("--n", type=_int_at_least(1), required=True, help="training images (out/train)")
    shapes.add_argument("--size", type=_int_at_least(8), default=64, help="image side in pixels (default 64)")
    shapes.add_argument("--out", type=Path, required=True, help="output folder")
    shapes.add_argument("--seed", type=_int_at_least(0), default=0, help="seed (default 0)")
    shapes.add_argument("--n_test", type=_int_at_least(0), default=0,
                        help="held-out images in out/test, numbered after the training ones (default 0)")
    shapes.add_argument("--second_object_prob", type=_probability, default=0.3,
                        help="probability of a second object (default 0.3)")
    judge = sub.add_parser("judge", help="score images against their shapes captions (metadata.jsonl)")
    judge.add_argument("folder", type=Path, help="folder of images with metadata.jsonl (file_name, text)")
    return parser


def _make_shapes(args) -> int:
    from fluxflow.datasets.shapes import write_shapes_dataset

    start = time.perf_counter()
    out = write_shapes_dataset(args.out, args.n, args.size, args.seed, args.n_test, args.second_object_prob)
    print(f"wrote {args.n} training and {args.n_test} test images of {args.size} px to {out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _judge(args) -> int:
    from PIL import Image

    from fluxflow.datasets.shapes import judge_accuracy

    meta = args.folder / "metadata.jsonl"
    if not meta.is_file():
        print(f"fluxflow-make-dataset judge: {meta} not found", file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in meta.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(Image.open(args.folder / r["file_name"]), r["text"]) for r in rows]
    scores = judge_accuracy(pairs)
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in scores.items()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _make_shapes(args) if args.dataset == "shapes" else _judge(args)


if __name__ == "__main__":
    sys.exit(main())
