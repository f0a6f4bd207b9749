"""`fluxflow-generate`: prompts in, images out.

    fluxflow-generate "a red circle" "a blue square" --model out/pipeline --output_dir images
    fluxflow-generate --prompts_file prompts.txt --model out/checkpoint.safetensors --grid

Each image gets its own seed, ``--seed + k`` for the k-th image overall, so results do not depend on
``--batch_size``. Files are named from their number, prompt and seed (``0003-a-red-circle-s42.png``).
Nothing is overwritten by default: the numbers continue after the highest one already in --output_dir
(as in A1111 and ComfyUI) and a second grid is ``grid-2.png``; --overwrite numbers from 0000 again and
replaces files of the same names. ``fluxflow-generate.json`` next to the images records, for every image
file, its prompt, negative prompt, seed, steps, guidance, size, model, device and dtype, and the command
that makes it again (bit for bit with --batch_size 1 on the same device and dtype).

Exit status: 0 when the images are written; 2, after one ``fluxflow-generate: error:`` line, for a bad
flag or input file (checked before the model is loaded, the size right after).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..repo_ids import is_repo_id

DTYPES = ("auto", "fp32", "fp16", "bf16")
FORMATS = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG"}  # --format: PIL format name
RECORD = "fluxflow-generate.json"  # in --output_dir: what made each image
NUMBERED = re.compile(r"(\d{4,})-")  # an image file this tool wrote: NNNN-<slug>-s<seed>.<format>


class UsageError(Exception):
    """A bad flag or input file: reported as one ``fluxflow-generate: error:`` line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fluxflow-generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompts", nargs="*", help="prompts (or use --prompts_file)")
    p.add_argument("--prompts_file", help="UTF-8 text file, one prompt per line (blank lines and # comments "
                                          "skipped); its prompts follow the ones given as arguments")
    p.add_argument("--model", required=True, help="pipeline folder, checkpoint.safetensors, or Hub repo id")
    p.add_argument("--output_dir", default="generated", help="folder for the images, created if missing "
                                                             "(default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="number images from 0000 and replace files of the same names, grid included "
                        "(default: continue the numbering after the images already in --output_dir; replace "
                        "nothing)")
    p.add_argument("--height", type=int, default=None, help="pixels, a multiple of the model's VAE factor x "
                                                            "patch size (default: the model's sample size)")
    p.add_argument("--width", type=int, default=None,
                   help="pixels, as --height (default: the model's sample size)")
    p.add_argument("--steps", type=int, default=28, help="number of sampling steps (default: %(default)s)")
    p.add_argument("--guidance_scale", type=float, default=5.0,
                   help="classifier-free guidance; 1 disables it (default: %(default)s)")
    p.add_argument("--negative_prompt", default=None,
                   help="for every image (default: none, the empty prompt)")
    p.add_argument("--num_images_per_prompt", type=int, default=1,
                   help="images per prompt, each with its own seed (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; the k-th uses seed + k "
                                                       "(default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=4, help="images per forward pass (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps "
                                                    "(default: %(default)s)")
    p.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="auto: bf16 on CUDA, fp32 elsewhere (default: %(default)s)")
    p.add_argument("--format", default="png", choices=tuple(FORMATS),
                   help="image file format (default: %(default)s)")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                   help="a LoRA adapter of the flow processor (a pytorch_lora_weights.safetensors file, a folder "
                        "holding one, or a Hub repo id) and its strength (default 1.0); repeat to mix adapters")
    p.add_argument("--grid", action="store_true",
                   help="also write grid.<format> with all images of the run (default: off)")
    return p


def main(argv=None) -> int:
    """Write the images: 0 when done; 2, after a one-line error on stderr, for a bad flag or input file."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse printed the help (0) or its usage error naming the flag (2)
        return exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 2
    try:
        prompts = check_args(args)
        pipe = load_pipeline(args)
        height, width = image_size(args, pipe)
        generate(args, pipe, prompts, height, width)
    except UsageError as err:
        print(f"fluxflow-generate: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------- checks before the model is loaded
def check_args(args) -> list[str]:
    """Every check that needs no model (cheapest first); returns the prompts. ``args.model_path`` becomes
    the local file or folder to load (a Hub repo is downloaded here), ``args.model_name`` what to record."""
    check_numbers(args)
    prompts = read_prompts(args)
    check_device(args.device)
    check_output_dir(Path(args.output_dir))
    args.loras = [parse_lora(spec) for spec in args.lora]
    args.model_path = resolve_model(args.model)
    # in the record: the Hub repo id, or the local file or folder as an absolute path
    args.model_name = str(args.model_path.resolve()) if Path(args.model).expanduser().exists() else args.model
    return prompts


def check_numbers(args) -> None:
    """Counts >= 1, sizes > 0 (whether a size suits the model is known once it is loaded)."""
    for flag in ("steps", "batch_size", "num_images_per_prompt"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    for flag in ("height", "width"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise UsageError(f"--{flag} must be > 0 pixels, got {getattr(args, flag)}")
    if not math.isfinite(args.guidance_scale):
        raise UsageError(f"--guidance_scale must be a finite number, got {args.guidance_scale}")


def read_prompts(args) -> list[str]:
    """The argument prompts, then the lines of ``--prompts_file`` (blank lines and # comments skipped)."""
    prompts = list(args.prompts)
    if args.prompts_file:
        path = Path(args.prompts_file)
        try:
            text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM (Windows editors) is not prompt text
        except FileNotFoundError:
            raise UsageError(f"--prompts_file {path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"--prompts_file {path}: is a folder, not a text file") from None
        except UnicodeDecodeError as err:
            raise UsageError(f"--prompts_file {path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
                             f"offset {err.start}); save it as UTF-8") from None
        except OSError as err:
            raise UsageError(f"--prompts_file {path}: cannot be read ({err.strerror or err})") from None
        lines = [line.strip() for line in text.splitlines()]
        from_file = [line for line in lines if line and not line.startswith("#")]
        if not from_file:
            raise UsageError(f"--prompts_file {path}: no prompts in it (only blank lines and # comments)")
        prompts += from_file
    if not prompts:
        raise UsageError("no prompts: pass them as arguments or with --prompts_file")
    return prompts


def parse_lora(spec: str) -> tuple[str, float]:
    """``PATH[:SCALE]`` -> ``(path, scale)``: a local file or folder, or a Hub repo id (downloaded when loaded)."""
    path, scale = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            path, scale = head, float(tail)
        except ValueError:
            pass  # a ':' that is part of the path
    if not math.isfinite(scale):
        raise UsageError(f"--lora {spec!r}: the scale must be a finite number")
    if not Path(path).expanduser().exists() and not is_repo_id(path):
        raise UsageError(f"--lora {spec!r}: {path} does not exist (a LoRA weights file, a folder holding one, or a "
                         "Hub repo id)")
    return path, scale


def check_device(name: str) -> None:
    """``--device`` must name a device torch knows and this machine has."""
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine")


def check_output_dir(out_dir: Path) -> None:
    """``--output_dir`` is a writable folder or can be made in the nearest existing folder above it, and the
    record of an earlier run in it is readable (it is extended, never replaced by a blank one)."""
    existing = next((d for d in (out_dir, *out_dir.parents) if d.exists()), Path("."))
    if existing == out_dir and not out_dir.is_dir():
        raise UsageError(f"--output_dir {out_dir}: is a file, not a folder")
    if not existing.is_dir():
        raise UsageError(f"--output_dir {out_dir}: cannot be created, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output_dir {out_dir}: not writable ({existing} is read-only)")
    read_record(out_dir)


def resolve_model(model: str) -> Path:
    """The local checkpoint file or pipeline folder ``--model`` names, checked by its header or
    ``model_index.json`` (no weights read); a name that is no local path is fetched as a Hub repo id."""
    path = Path(model).expanduser()
    if path.is_file():
        check_checkpoint(path, model)
    elif path.is_dir():
        check_pipeline_folder(path, model)
    elif path.exists():
        raise UsageError(f"--model {model}: not a file or folder")
    elif path.suffix == ".safetensors" or not is_repo_id(model):
        raise UsageError(f"--model {model}: no such file or folder")
    else:
        path = _download(model)
        check_pipeline_folder(path, model)
    return path


def check_checkpoint(path: Path, model: str) -> None:
    """A one-file checkpoint must carry the VAE, a transformer, the text encoder and the tokenizer."""
    from ..pipelines.single_file import read_metadata

    try:
        metadata = read_metadata(path)
        components = json.loads(metadata["fluxflow_components"])
    except ValueError:  # read by safetensors, but not written by fluxflow
        raise UsageError(f"--model {model}: a safetensors file without fluxflow metadata, not a fluxflow "
                         f"checkpoint") from None
    except Exception as err:  # safetensors raises its own error type for a file that is not safetensors
        raise UsageError(f"--model {model}: not a fluxflow checkpoint.safetensors "
                         f"({str(err) or type(err).__name__})") from None
    missing = [c for c in ("vae", "text_encoder") if c not in components]
    if "transformer" not in components and "transformer_ema" not in components:
        missing.append("transformer")
    if missing:
        raise UsageError(f"--model {model}: the checkpoint has no {', '.join(missing)} (it has "
                         f"{', '.join(components) or 'nothing'}); a VAE-stage checkpoint cannot make images")
    if "fluxflow_tokenizer" not in metadata:
        raise UsageError(f"--model {model}: the checkpoint carries no tokenizer")


def check_pipeline_folder(folder: Path, model: str) -> None:
    """A folder must be what ``FluxFlowPipeline.save_pretrained`` writes; its ``model_index.json`` says so."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise UsageError(f"--model {model}: a folder without model_index.json, not a saved pipeline (give "
                         f"the folder FluxFlowPipeline.save_pretrained wrote, or a checkpoint.safetensors)")
    try:
        config = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: bad JSON or not UTF-8
        raise UsageError(f"--model {model}: {index.name} is not readable JSON ({err})") from None
    kind = config.get("_class_name") if isinstance(config, dict) else None
    if kind != "FluxFlowPipeline":
        raise UsageError(f"--model {model}: {index.name} describes {kind or 'no pipeline class'}, "
                         f"not a FluxFlowPipeline")




def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as err:  # not found, gated, offline, no network: all mean "no such model here"
        raise UsageError(f"--model {repo_id}: no such file or folder, and no Hub repo of that name could be "
                         f"fetched ({str(err) or type(err).__name__})") from None


# ---------------------------------------------------------------- the model
def dtype_name(name: str, device: str) -> str:
    return ("bf16" if device.startswith("cuda") else "fp32") if name == "auto" else name


def pick_device(name: str) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def load_pipeline(args):
    """The checked ``args.model_path`` on ``args.device``; weights that do not load are a bad --model."""
    import torch
    from safetensors import SafetensorError

    from ..pipelines import FluxFlowPipeline

    args.device = pick_device(args.device)
    args.dtype = dtype_name(args.dtype, args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    try:
        pipe = FluxFlowPipeline.from_pretrained(args.model_path, dtype=dtype)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:
        reason = str(err) or type(err).__name__
        raise UsageError(f"--model {args.model}: cannot be loaded ({reason})") from None
    pipe.set_progress_bar_config(disable=True)
    apply_loras(pipe, args.loras)
    return pipe.to(args.device)


def apply_loras(pipe, loras: list[tuple[str, float]]) -> None:
    """Load each ``(path, scale)`` adapter as ``lora_<i>`` and mix them at their scales (diffusers' loader)."""
    if not loras:
        return
    from ..pipelines.lora import require_peft

    try:
        require_peft()
    except ImportError as err:
        raise UsageError(f"--lora: {err}") from None
    names = [f"lora_{i}" for i in range(len(loras))]
    for name, (path, _) in zip(names, loras):
        local = Path(path).expanduser()
        try:
            pipe.load_lora_weights(str(local) if local.exists() else path, adapter_name=name)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise UsageError(f"--lora {path}: cannot be loaded into this model's flow processor "
                             f"({' '.join(str(err).split())[:300]})") from None
    pipe.set_adapters(names, [scale for _, scale in loras])


def image_size(args, pipe) -> tuple[int, int]:
    """``(height, width)``: the flags, which must be multiples of what the model takes, or its sample size."""
    multiple = pipe.vae_scale_factor * pipe.transformer.config.patch_size
    for flag in ("height", "width"):
        value = getattr(args, flag)
        if value is not None and value % multiple:
            lower, upper = value - value % multiple, value - value % multiple + multiple
            hint = f"{lower} or {upper}" if lower else str(upper)
            raise UsageError(f"--{flag} {value}: this model needs a multiple of {multiple} (VAE factor "
                             f"{pipe.vae_scale_factor} x patch size {pipe.transformer.config.patch_size}), "
                             f"e.g. {hint}")
    return args.height or pipe.default_sample_size, args.width or pipe.default_sample_size


# ---------------------------------------------------------------- sampling and files
def generate(args, pipe, prompts: list[str], height: int, width: int) -> None:
    """Sample every image, save it under a new name (or its --overwrite name) and record it, batch by batch,
    so that every image on disk is in the record even if the run is stopped."""
    import torch
    from tqdm.auto import tqdm

    from ..atomic import clean_leftovers

    out_dir = Path(args.output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--output_dir {out_dir}: cannot be created ({err.strerror or err})") from None
    clean_leftovers(out_dir)  # half-written files of a killed run (only fluxflow's temporary names)
    first = first_number(out_dir, args.overwrite)
    if first:
        print(f"{out_dir} already holds images up to {first - 1:04d}: numbering continues at {first:04d} "
              f"(--overwrite starts again at 0000 and replaces files)")
    each = (p for p in prompts for _ in range(args.num_images_per_prompt))
    jobs = [(p, args.seed + k) for k, p in enumerate(each)]
    images, names, used, replaced = [], [], set(), 0
    for start in tqdm(range(0, len(jobs), args.batch_size), desc="batches", unit="batch"):
        batch = jobs[start:start + args.batch_size]
        result = pipe([p for p, _ in batch], negative_prompt=args.negative_prompt, height=height, width=width,
                      num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                      generator=[torch.Generator("cpu").manual_seed(s) for _, s in batch]).images
        entries = {}
        for k, ((prompt, seed), image) in enumerate(zip(batch, result)):
            name = file_name(out_dir, f"{first + start + k:04d}-{slug(prompt)}-s{seed}", args, used)
            replaced += (out_dir / name).exists()
            save_image(image, out_dir / name, args.format)
            entries[name] = record_entry(args, prompt, seed, height, width)
            images.append(image)
            names.append(name)
        update_record(out_dir, images=entries)
    if args.grid:
        name = file_name(out_dir, "grid", args, used)
        replaced += (out_dir / name).exists()
        save_grid(images, out_dir / name, args.format)
        update_record(out_dir, grids={name: names})
    note = f" (replaced {replaced} existing file(s): --overwrite)" if replaced else ""
    print(f"wrote {len(images)} image(s) to {out_dir}{note}; what made each is in {out_dir / RECORD}")


def first_number(out_dir: Path, overwrite: bool) -> int:
    """The first image number of this run: one past the highest ``NNNN-`` file already in ``out_dir``, so
    that nothing is replaced and names sort in the order they were made; 0 with --overwrite."""
    if overwrite:
        return 0
    numbers = [int(m.group(1)) for p in out_dir.iterdir() if (m := NUMBERED.match(p.name))]
    return max(numbers, default=-1) + 1


def file_name(out_dir: Path, stem: str, args, used: set[str]) -> str:
    """``stem.<format>``; without --overwrite, ``stem-2``, ``stem-3``... when that name is taken."""
    if args.overwrite:
        return f"{stem}.{args.format}"
    return f"{unique_name(out_dir, stem, args.format, used)}.{args.format}"


def unique_name(out_dir: Path, stem: str, suffix: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... : never a name used in this run or present on disk."""
    name, n = stem, 1
    while name in used or (out_dir / f"{name}.{suffix}").exists():
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def slug(prompt: str, limit: int = 60) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return text[:limit].rstrip("-") or "prompt"


def save_image(image, path: Path, fmt: str) -> None:
    """Written under a temporary name and renamed: a stopped run leaves no half image."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format=FORMATS[fmt])


def save_grid(images, path: Path, fmt: str) -> None:
    from diffusers.utils import make_image_grid

    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    blank = images[0].copy()
    blank.paste((0, 0, 0), (0, 0, *blank.size))
    save_image(make_image_grid(images + [blank] * (rows * cols - len(images)), rows, cols), path, fmt)


# ---------------------------------------------------------------- the record
def record_entry(args, prompt: str, seed: int, height: int, width: int) -> dict:
    """Everything that decides one image, and the command that makes it again."""
    from .. import __version__

    model = args.model_name
    command = ["fluxflow-generate", "--model", model, "--seed", seed, "--steps", args.steps,
               "--guidance_scale", args.guidance_scale, "--height", height, "--width", width,
               "--device", args.device, "--dtype", args.dtype, "--batch_size", 1, "--format", args.format]
    for path, scale in args.loras:
        command += ["--lora", f"{path}:{scale:g}"]
    if args.negative_prompt is not None:  # "=": a negative prompt may start with "-"
        command += [f"--negative_prompt={args.negative_prompt}"]
    command += ["--", prompt] if prompt.startswith("-") else [prompt]
    return {"prompt": prompt, "negative_prompt": args.negative_prompt, "seed": seed, "steps": args.steps,
            "guidance_scale": args.guidance_scale, "height": height, "width": width, "model": model,
            "lora": [{"path": path, "scale": scale} for path, scale in args.loras],
            "device": args.device, "dtype": args.dtype, "batch_size": args.batch_size,
            "noise": "torch.Generator('cpu').manual_seed(seed)", "fluxflow_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(str(c) for c in command)}


def read_record(out_dir: Path) -> dict:
    """The record in ``out_dir`` (empty when there is none); one that is not ours is refused, not replaced."""
    path = out_dir / RECORD
    if not path.exists():
        return {"images": {}, "grids": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record.get("images"), dict) or not isinstance(record.get("grids"), dict):
            raise ValueError("no 'images' and 'grids' tables")
    except (OSError, ValueError, AttributeError) as err:
        raise UsageError(f"--output_dir {out_dir}: {RECORD} there is not a fluxflow-generate record ({err}); "
                         f"move it away or choose another --output_dir") from None
    return record


def update_record(out_dir: Path, images: dict | None = None, grids: dict | None = None) -> None:
    """Add (or, for replaced files, update) entries; re-read first so another run's entries are kept."""
    from ..atomic import write_text_atomically

    record = read_record(out_dir)
    record["images"].update(images or {})
    record["grids"].update(grids or {})
    write_text_atomically(out_dir / RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
