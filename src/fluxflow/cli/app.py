"""``fluxflow-app``: a local web app to generate images with a fluxflow model and to watch training runs.

    fluxflow-app --runs outputs/demo                 # the demo's pipelines and its stages' curves and grids
    fluxflow-app --model out/pipeline --port 7861    # a folder, a checkpoint.safetensors or a Hub repo id

Serves http://127.0.0.1:PORT (this machine only; --host 0.0.0.0 for the network). Models load only from
--model, --runs or the Hub; sizes, images and steps per request are capped (--max_size, --max_images,
--max_steps). Needs the app extra: pip install 'fluxflow[app]'.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..app import APP_EXTRA
from ..app.limits import MAX_IMAGES, MAX_SIZE, MAX_STEPS
from ..repo_ids import is_repo_id
from .generate import DTYPES, UsageError, check_device

PROG = "fluxflow-app"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a pipeline folder, a checkpoint.safetensors or a Hub repo "
                                                 "id, offered first in the Generate tab")
    p.add_argument("--runs", default=None, help="a training run's output folder, or a folder of them: the "
                                                "Runs tab, and their pipelines in the Generate tab")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s, this "
                                                       "machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860, or the next free one)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--max_size", type=int, default=MAX_SIZE, help="largest height and width in pixels "
                                                                 "(default: %(default)s)")
    p.add_argument("--max_images", type=int, default=MAX_IMAGES, help="most images per request "
                                                                     "(default: %(default)s)")
    p.add_argument("--max_steps", type=int, default=MAX_STEPS, help="most sampling steps per request "
                                                                   "(default: %(default)s)")
    p.add_argument("--max_models", type=int, default=2, help="models kept loaded (default: %(default)s)")
    p.add_argument("--lora_dir", action="append", default=[],
                   help="a folder of LoRA .safetensors files the page may load (besides --runs); repeatable")
    p.add_argument("--no_hub", action="store_true", help="refuse Hub repo ids typed in the page")
    p.add_argument("--refresh", type=float, default=10.0, help="seconds between re-reads of the runs "
                                                               "(default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted: 0; 2 after a one-line error for a bad flag or a missing gradio."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 2
    try:
        demo = build(args)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    from ..app.ui import launch

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"{PROG}: serving on {args.host}: anyone who can reach this machine can generate images and "
              "read the runs' metrics and grids (there is no login)", file=sys.stderr)
    launch(demo, args.host, args.port)
    return 0


def build(args):
    """The app's page for the parsed flags (checked first; a model is loaded only when the page asks)."""
    check_args(args)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the app talks to no one but its page
    try:
        from ..app.ui import build_app
    except ImportError as err:
        raise UsageError(f"the app needs gradio ({err}): {APP_EXTRA}") from None
    from ..app.access import Access
    from ..app.config import AppConfig
    from ..app.limits import Limits
    from ..app.models import PipelineCache

    _log_to_stderr(logging.getLogger("fluxflow.app"))
    access = Access(model=args.model, runs=args.runs, lora_dirs=args.lora_dir, allow_hub=not args.no_hub)
    limits = Limits(max_size=args.max_size, max_images=args.max_images, max_steps=args.max_steps)
    cache = PipelineCache(device=args.device, dtype=args.dtype, size=args.max_models)
    return build_app(AppConfig(access=access, limits=limits, cache=cache, refresh_seconds=args.refresh))


def _log_to_stderr(logger: logging.Logger) -> None:
    """The app's own lines (models loaded, failures with their traceback) on stderr; others stay quiet."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def check_args(args) -> None:
    for flag in ("max_size", "max_images", "max_steps", "max_models"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not args.refresh > 0:
        raise UsageError(f"--refresh must be > 0 seconds, got {args.refresh}")
    if args.runs is not None and not Path(args.runs).expanduser().is_dir():
        raise UsageError(f"--runs {args.runs}: not a folder")
    for folder in args.lora_dir:
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f"--lora_dir {folder}: not a folder")
    if args.model is None and args.runs is None:
        raise UsageError("give --model, --runs or both")
    if args.model is not None and not Path(args.model).expanduser().exists() and not is_repo_id(args.model):
        raise UsageError(f"--model {args.model}: no such file or folder, and not a Hub repo id")
    check_device(args.device)


if __name__ == "__main__":
    sys.exit(main())
