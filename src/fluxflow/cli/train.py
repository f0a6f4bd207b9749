"""`fluxflow-train`: the training program (`accelerate launch examples/train_fluxflow.py` runs the same code).

    fluxflow-train --train_vae --data_path data/shapes/train --img_size 64 --model_preset small --n_epochs 5
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from ..training.config import parse_config
    from ..training.data import DataError
    from ..training.errors import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg, optim_sections = parse_config(argv)
        from ..training.trainer import train

        train(cfg, optim_sections)
    except (ConfigError, DataError) as err:
        print(f"fluxflow-train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
