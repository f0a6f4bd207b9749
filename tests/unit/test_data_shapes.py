"""The embedded shapes data set: determinism, coverage, the judge's accuracy, the command, the data path."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from fluxflow.cli.make_dataset import main as make_dataset
from fluxflow.datasets.shapes import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    generate_sample,
    judge_accuracy,
    judge_image,
    make_scene,
    parse_caption,
    render_scene,
    write_shapes_dataset,
)
from fluxflow.training.data import DataConfig, build_dataset

HELD_OUT = range(50_000, 50_200)  # never written by the tests' training splits


def test_generator_is_a_pure_function_of_seed_index_size():
    a, cap_a = generate_sample(7, 123, 48)
    b, cap_b = generate_sample(7, 123, 48)
    assert cap_a == cap_b and a.tobytes() == b.tobytes()
    assert generate_sample(7, 123, 96)[1] == cap_a  # the size changes the resolution, not the scene
    assert generate_sample(8, 123, 48)[1] != cap_a or generate_sample(8, 123, 48)[0].tobytes() != a.tobytes()
    assert a.size == (48, 48) and a.mode == "RGB"


def test_scenes_cover_the_vocabulary():
    scenes = [make_scene(0, i) for i in range(600)]
    objects = [o for s in scenes for o in s.objects]
    assert {o.shape for o in objects} == set(SHAPES) and {o.colour for o in objects} == set(COLOURS)
    assert {o.position for o in objects} == set(POSITIONS) and {s.background for s in scenes} == set(BACKGROUNDS)
    two = sum(len(s.objects) == 2 for s in scenes) / len(scenes)
    assert 0.2 < two < 0.4
    for s in scenes:
        if len(s.objects) == 2:
            assert s.objects[0].colour != s.objects[1].colour and s.objects[0].position != s.objects[1].position


def test_caption_wording_and_parse_round_trip():
    scene = make_scene(0, 0)
    assert parse_caption(scene.caption) == dataclasses.replace(
        scene, objects=tuple(dataclasses.replace(o, scale=0.75, dx=0.0, dy=0.0) for o in scene.objects))
    assert parse_caption("an orange star at the top and a red circle in the center on a gray background").objects[1].position == "center"
    with pytest.raises(ValueError, match="not a shapes caption"):
        parse_caption("a photo of a cat")


def test_judge_on_held_out_images_and_shuffled_captions():
    pairs = [generate_sample(0, i, 64) for i in HELD_OUT]
    scores = judge_accuracy(pairs)
    assert scores["accuracy"] >= 0.98 and scores["n"] == len(HELD_OUT)
    captions = [c for _, c in pairs]
    random.Random(0).shuffle(captions)
    shuffled = judge_accuracy([(im, c) for (im, _), c in zip(pairs, captions)])
    assert shuffled["accuracy"] <= 0.30


def test_judge_is_reliable_at_32_px_too():
    assert judge_accuracy([generate_sample(1, i, 32) for i in HELD_OUT[:60]])["accuracy"] >= 0.98


@pytest.mark.parametrize("field, other", [("shape", "square"), ("colour", "blue"), ("position", "bottom right")])
def test_judge_catches_each_wrong_attribute(field, other):
    for i in range(40):
        scene = make_scene(3, i, second_object_prob=0.0)
        if getattr(scene.objects[0], field) == other or (field == "colour" and scene.background == other):
            continue
        wrong = dataclasses.replace(scene, objects=(dataclasses.replace(scene.objects[0], **{field: other}),))
        verdict = judge_image(render_scene(wrong, 64), scene.caption)
        assert not getattr(verdict, field) and not verdict.ok, (i, scene.caption, wrong)


def test_judge_catches_a_wrong_background():
    scene = make_scene(0, 5)
    other = next(b for b in BACKGROUNDS if b != scene.background and all(o.colour != b for o in scene.objects))
    verdict = judge_image(render_scene(dataclasses.replace(scene, background=other), 64), scene.caption)
    assert not verdict.background and verdict.shape and verdict.position


def test_judge_fails_a_blank_image_and_tolerates_blur():
    _, caption = generate_sample(0, 1, 64)
    assert not judge_image(Image.new("RGB", (64, 64), "white"), caption).colour
    blurred = [(im.filter(ImageFilter.GaussianBlur(1.0)), c) for im, c in (generate_sample(0, i, 64) for i in HELD_OUT[:60])]
    assert judge_accuracy(blurred)["accuracy"] >= 0.9  # soft edges, as a decoder makes them


def test_write_dataset_and_read_it_through_both_data_paths(tmp_path):
    out = write_shapes_dataset(tmp_path / "shapes", n=12, size=32, seed=4, n_test=3)
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and rows[5] == {"file_name": "00005.png", "text": generate_sample(4, 5, 32)[1]}
    assert np.array_equal(np.asarray(Image.open(out / "train" / "00005.png")), np.asarray(generate_sample(4, 5, 32)[0]))
    test_rows = (out / "test" / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(r)["file_name"] for r in test_rows] == ["00012.png", "00013.png", "00014.png"]
    by_folder = build_dataset(DataConfig(data_path=str(out / "train"), img_size=32))
    by_captions = build_dataset(DataConfig(data_path=str(out / "train"), img_size=32,
                                           captions_file=str(out / "train" / "captions.txt")))
    by_name = build_dataset(DataConfig(dataset_name=str(out), dataset_split="test", img_size=32))
    assert len(by_folder) == len(by_captions) == 12 and len(by_name) == 3
    x, caption = by_captions[5]
    assert caption == rows[5]["text"] and by_folder[5][1] == caption
    # through the data path the picture is still what its caption says
    as_image = Image.fromarray(((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
    assert judge_image(as_image, caption).ok


def test_make_dataset_command(tmp_path, capsys):
    assert make_dataset(["shapes", "--n", "8", "--size", "32", "--out", str(tmp_path / "s"), "--n_test", "4"]) == 0
    assert "wrote 8 training and 4 test images of 32 px" in capsys.readouterr().out
    assert len(list((tmp_path / "s" / "train").glob("*.png"))) == 8
    assert make_dataset(["judge", str(tmp_path / "s" / "test")]) == 0
    assert capsys.readouterr().out.startswith("accuracy=1.0000")
    with pytest.raises(SystemExit):
        make_dataset(["shapes", "--n", "0", "--out", str(tmp_path / "x")])
    assert "--n: must be >= 1, got 0" in capsys.readouterr().err


def test_generated_set_is_balanced():
    counts = Counter(o.shape for i in range(400) for o in make_scene(0, i).objects)
    assert min(counts.values()) > 0.15 * sum(counts.values())


def test_judge_reconstructions_scores_what_the_vae_gives_back(tmp_path):
    from fluxflow.datasets.shapes import judge_reconstructions, read_split
    from fluxflow.models import FluxFlowVAE

    write_shapes_dataset(tmp_path, 1, size=32, seed=0, n_test=8, second_object_prob=0.0)
    images, captions = read_split(tmp_path / "test")
    assert len(images) == len(captions) == 8 and images[0].size == (32, 32)
    assert judge_accuracy(zip(images, captions))["accuracy"] == 1.0
    torch.manual_seed(0)
    untrained = FluxFlowVAE.from_preset("tiny").eval()  # gives back no object: nothing to find
    result = judge_reconstructions(untrained, images, captions, batch=3)
    assert result["n"] == 8 and result["accuracy"] <= 0.25 and result["shape"] <= 0.25
