"""Train fluxflow with Accelerate: the same program as `fluxflow-train`.

    accelerate launch --config_file accelerate_configs/cpu.yaml examples/train_fluxflow.py \
        --train_vae --data_path data/shapes/train --img_size 64 --model_preset small

Every flag is described by `fluxflow-train --help` and docs/TRAINING.md.
"""

import sys

from fluxflow.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
