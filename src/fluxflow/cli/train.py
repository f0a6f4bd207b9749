"""`fluxflow-train`: the training program (`accelerate launch examples/train_fluxflow.py` runs the same code).

    fluxflow-train --train_vae --data_path data/shapes/train --img_size 64 --model_preset small --n_epochs 5
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one training job: 0 when done or stopped by SIGTERM/SIGINT (with a checkpoint); 2, after a one-line
    error on stderr, for a bad flag or file; 1 when a started run cannot go on; 130 for a second Ctrl+C.

    The stop signals are caught from the first line (before torch is imported) to the last; the whole config is
    validated before the trainer (models, Accelerate) is even imported, so a mistake costs seconds."""
    from ..training.signals import StopSignal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    with StopSignal() as stop:
        try:
            return _train(argv, stop)
        except KeyboardInterrupt:
            print("fluxflow-train: interrupted; the last checkpoint on disk is kept: continue with the same command "
                  "plus --resume_from_checkpoint latest", file=sys.stderr)
            return 130


def _train(argv, stop) -> int:
    from ..training.arguments import load_config
    from ..training.plan import plan_text
    from ..training.stages import load_pipeline, single_stage
    from ..training.checkpoint import CheckpointError
    from ..training.data import DataError
    from ..training.errors import ConfigError
    from ..training.guards import NonFiniteError
    from ..training.hub import HubPushError

    try:
        pipeline = load_pipeline(argv)  # a --config file with stages:, else None
        if pipeline is None:
            cfg, optim_config = load_config(argv)
        if (pipeline[0] if pipeline else cfg).dry_run:  # the plan, checked, and nothing trained
            print(plan_text(pipeline[1] if pipeline else [single_stage(cfg, optim_config)]), end="")
            return 0
    except SystemExit as exit:  # argparse printed the help (0) or its usage error naming the flag (2)
        return exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 2
    except ConfigError as err:
        return _error(err)
    if stop.received:
        print(f"fluxflow-train: {stop.name}: stopped before anything was built; nothing to save", file=sys.stderr)
        return 0
    try:
        from ..training.trainer import train

        if pipeline is not None:
            from ..training.staged import run_stages

            run_stages(*pipeline, stop)
        else:
            train(cfg, optim_config, stop)
    except (ConfigError, DataError) as err:
        return _error(err)
    except (NonFiniteError, CheckpointError) as err:  # the run started; the last checkpoint on disk is kept
        print(f"fluxflow-train: stopped: {err}", file=sys.stderr)
        return 1
    except HubPushError as err:  # at the start (the repo), or at the end (the trained files are kept)
        print(f"fluxflow-train: Hub: {err}", file=sys.stderr)
        return 1
    return 0


def _error(err: Exception) -> int:
    print(f"fluxflow-train: error: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
