from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

CONFIGS = sorted((Path(__file__).parents[2] / "accelerate_configs").glob("*.yaml"))


def test_configs_exist():
    assert {"cpu.yaml", "single_gpu.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_reads_each_config(path):
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1 and config.mixed_precision in {"no", "fp16", "bf16"}
