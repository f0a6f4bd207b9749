"""``fluxflow-report``: one self-contained HTML page of a training run (curves, grids, config, model card).

    fluxflow-report out/my_run                     # writes out/my_run/report.html
    fluxflow-report out/my_run --out run.html
    fluxflow-report out/my_pipeline                # a pipeline run: one page per stage (stages/<i>-<name>/)

The page needs no server and fetches nothing: open it in a browser, or attach it to an issue. It can be
rewritten while the run trains (the file is replaced atomically).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fluxflow.report.run_data import RUN_PARTS, stage_folders

PROG = "fluxflow-report"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_path", help="the run's output folder (--output_path of fluxflow-train)")
    p.add_argument("--out", default=None, help="the HTML file to write (default: <output_path>/report.html)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = Path(args.output_path)
    if not folder.is_dir():
        print(f"{PROG}: {folder} is not a folder (give a training run's --output_path)", file=sys.stderr)
        return 2
    stages = stage_folders(folder) if not args.out else []
    if stages:  # a pipeline run: each stage is a run of its own
        return max(main([str(stage)]) for stage in stages)
    if not any((folder / part).exists() for part in RUN_PARTS):
        print(f"{PROG}: {folder} holds none of logs/metrics.jsonl, samples/, pipeline/: is it a training "
              "run's output folder?", file=sys.stderr)
        return 2
    from fluxflow.report import write_report

    try:
        written = write_report(folder, args.out)
    except OSError as err:
        print(f"{PROG}: could not write the report: {err}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
