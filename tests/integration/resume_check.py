"""The exact-resume check shared by the VAE and flow training tests."""

from pathlib import Path

import torch
from safetensors.torch import load_file


def assert_resume_is_exact(train, data, tmp_path: Path, flags: list[str], at: int = 3) -> Path:
    """Train straight; move the state saved after step ``at`` into a fresh folder and resume from it there;
    the final weights must be identical bit for bit. Returns the resumed run's folder."""
    train(data, tmp_path / "straight", *flags)
    resumed = tmp_path / "resumed"
    (resumed / "state").mkdir(parents=True)
    (tmp_path / "straight" / "state" / f"checkpoint-{at}").rename(resumed / "state" / f"checkpoint-{at}")
    train(data, resumed, *flags, "--resume_from_checkpoint", "latest")
    a = load_file(tmp_path / "straight" / "checkpoint.safetensors")
    b = load_file(resumed / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    return resumed
