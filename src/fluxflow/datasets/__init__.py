"""Embedded datasets and their judges: ``shapes`` (coloured shapes with exact captions). See docs/DATA.md."""

from fluxflow.datasets.shapes import (
    Scene,
    ShapeObject,
    Verdict,
    generate_sample,
    judge_accuracy,
    judge_image,
    make_scene,
    parse_caption,
    render_scene,
    write_shapes_dataset,
)

__all__ = [
    "Scene", "ShapeObject", "Verdict", "generate_sample", "judge_accuracy", "judge_image", "make_scene",
    "parse_caption", "render_scene", "write_shapes_dataset",
]
