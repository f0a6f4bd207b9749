"""`fluxflow-train` that SIGKILLs itself in the middle of a save: a real kill at the worst moment.

    python dying_train.py state|weights|sample STEP <fluxflow-train flags>

``state``: while ``accelerator.save_state`` writes the state folder of STEP (one file half written);
``weights``: while ``checkpoint.safetensors`` of STEP is being written (its temporary file half written);
``sample``: while the first VAE sample image of STEP is being written (its temporary file half written).
"""

import json
import os
import signal
import sys
from contextlib import contextmanager

import accelerate.utils.other as accelerate_io

import fluxflow.pipelines.single_file as single_file
import fluxflow.training.samples as samples
from fluxflow.atomic import temp_name
from fluxflow.cli.train import main


def _die_half_written(path) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    os.kill(os.getpid(), signal.SIGKILL)


def _dying(real, should_die):
    def save(tensors, path, *args, **kwargs):
        real(tensors, path, *args, **kwargs)
        if should_die(path, kwargs.get("metadata") or {}):
            _die_half_written(path)

    return save


def _dying_sample(real, step):
    @contextmanager
    def atomic_path(path):
        with real(path) as tmp:
            yield tmp
            if path.name.startswith(f"vae_epoch_{step:04d}-"):
                _die_half_written(tmp)

    return atomic_path


if __name__ == "__main__":
    where, step, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if where == "state":
        accelerate_io.safe_save_file = _dying(accelerate_io.safe_save_file,
                                              lambda path, meta: temp_name(f"checkpoint-{step}") in str(path))
    elif where == "sample":
        samples.atomic_path = _dying_sample(samples.atomic_path, step)
    else:
        single_file.save_file = _dying(single_file.save_file, lambda path, meta: json.loads(
            meta.get("fluxflow_extra", "{}")).get("global_step") == step)
    sys.exit(main(flags))
