"""Every pipeline file in examples/pipelines/ is a valid plan (``--dry_run``) on small stand-ins for its data."""

from pathlib import Path

import pytest

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset

EXAMPLES = Path(__file__).parents[2] / "examples" / "pipelines"
DATA = {  # the folders each example reads (relative to the working directory), written small
    "vae_flow_joint.yaml": [("data/shapes64", 64, 0.3)],
    "two_datasets.yaml": [("data/shapes", 32, 0.3), ("data/shapes-pairs", 32, 1.0)],
    "shapes_demo.yaml": [("demo/data", 32, 0.0)],
}
FLAGS = {"shapes_demo.yaml": ["--data_path", "demo/data/train", "--validation_data_path", "demo/data/test",
                              "--output_path", "demo"]}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(DATA)


@pytest.mark.parametrize("name", sorted(DATA))
def test_example_plans(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for folder, size, second in DATA[name]:
        write_shapes_dataset(folder, 24, size=size, seed=0, n_test=8, second_object_prob=second)
    assert main(["--config", str(EXAMPLES / name), "--dry_run", *FLAGS.get(name, [])]) == 0
    plan = capsys.readouterr().out
    stages = plan.count("\nstage ")
    assert stages >= 2 and "optimizers" in plan, plan
    assert not Path("outputs").exists() and not Path("demo/stages").exists()  # a dry run trains nothing
