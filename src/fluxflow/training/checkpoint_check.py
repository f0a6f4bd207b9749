"""``--model_checkpoint`` and a local ``--pretrained_vae_model_name_or_path`` checked before anything is built: the
file or folder form, the classes they name, the sizes their configs ask for, and safetensors weights. Only
headers and ``config.json`` files are read; sizes are counted on PyTorch's meta device, which allocates nothing.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from ..repo_ids import is_repo_id

# component -> the fluxflow class it must be (a checkpoint naming anything else is not ours)
EXPECTED = {"vae": "FluxFlowVAE", "transformer": "FluxFlowTransformer", "transformer_ema": "FluxFlowTransformer",
            "text_encoder": "FluxFlowTextEncoder", "discriminator": "PatchDiscriminator"}
LARGEST_SETTING = 1_000_000  # no width, depth or count in a model config of ours comes near this
# the VAEs --pretrained_vae_model_name_or_path loads; a flow run's checkpoint saves such a VAE beside its transformer
PRETRAINED_VAE_CLASSES = ("AutoencoderKL", "FluxFlowVAE")
PRETRAINED_VAE_FLAG = "--pretrained_vae_model_name_or_path"
FILE_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")  # a missing name ending so is a file, no repo


def checkpoint_configs(path: str | os.PathLike) -> dict[str, tuple[str | None, dict]]:
    """``{component: (class name, config)}`` of a ``checkpoint.safetensors``, a pipeline folder or a VAE folder."""
    p = Path(path)
    if p.is_file():
        from ..pipelines.single_file import read_metadata

        metadata = read_metadata(p)
        return {name: (cls, json.loads(metadata.get(f"fluxflow_config.{name}", "{}")))
                for name, cls in json.loads(metadata["fluxflow_components"]).items()}
    configs = {}
    for name, folder in _folders(p).items():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        configs[name] = (config.get("_class_name") if isinstance(config, dict) else None, config)
    return configs


def _folders(p: Path) -> dict[str, Path]:
    """``{component: folder}`` of a pipeline folder, or ``{"vae": p}`` for a model folder."""
    if (p / "vae" / "config.json").is_file():
        return {name: p / name for name in EXPECTED if (p / name / "config.json").is_file()}
    return {"vae": p}


@functools.lru_cache(maxsize=8)
def local_checkpoint(name: str) -> str:
    """``name`` itself when it is on disk (or no Hub id); a Hub repo id's snapshot, downloaded once and then read
    from the Hub cache: the pipeline, without the ``checkpoints/`` a run pushed beside it. Remembered per name, so
    the checks and the load ask the Hub once."""
    if os.path.exists(name) or not is_repo_id(name):
        return name
    from huggingface_hub import snapshot_download

    return snapshot_download(name, ignore_patterns=["checkpoints/*"])


def checkpoint_problems(path: str) -> list[str]:
    """Everything wrong with ``--model_checkpoint path`` (``[]`` when fluxflow can load it); a Hub repo id is
    downloaded here, before anything is built."""
    flag = f"--model_checkpoint {path!r}"
    if not os.path.exists(path) and (not is_repo_id(path) or path.endswith(FILE_SUFFIXES)):
        return [f"{flag} does not exist (neither a file or folder nor a Hub repo id)"]
    try:
        path = local_checkpoint(path)
    except Exception as err:  # not found, offline without a cached copy, no access: huggingface_hub says which
        return [f"{flag} does not exist here, and as a Hub repo id it cannot be downloaded "
                f"({' '.join(str(err).split())[:300]})"]
    p = Path(path)
    if p.is_dir() and not ((p / "vae" / "config.json").is_file() or (p / "config.json").is_file()):
        return [f"{flag} is a folder without vae/config.json or config.json: give a checkpoint.safetensors, a "
                "pipeline folder or a vae/ folder"]
    try:
        configs = checkpoint_configs(p)
    except Exception as err:  # safetensors and json raise their own error types for a damaged file
        what = "fluxflow checkpoint.safetensors" if p.is_file() else "fluxflow model folder (unreadable config.json)"
        return [f"{flag} is not a {what} ({' '.join(str(err).split()) or type(err).__name__})"]
    problems = [_class_problem(flag, name, cls) for name, (cls, _) in configs.items() if not _known(name, cls, configs)]
    if p.is_dir():
        problems += [f"{flag}: {folder} holds only pickled .bin weights; fluxflow loads safetensors (unpickling can "
                     "run code): re-save it with save_pretrained(..., safe_serialization=True)"
                     for folder in _folders(p).values() if _pickle_only(folder)]
    return problems or _size_problems(flag, configs)


def _known(name: str, cls: str | None, configs: dict) -> bool:
    """Fluxflow's class for ``name``; for the VAE also an ``AutoencoderKL`` that a flow run saved (it is then beside
    a FluxFlowTransformer): a lone one is another library's VAE, for ``--pretrained_vae_model_name_or_path``."""
    if name == "vae" and cls == "AutoencoderKL":
        return configs.get("transformer", (None,))[0] == EXPECTED["transformer"]
    return EXPECTED.get(name) == cls


def _class_problem(flag: str, name: str, cls: str | None) -> str:
    hint = f"; a pretrained diffusers VAE goes to {PRETRAINED_VAE_FLAG}" if name == "vae" and \
        cls in PRETRAINED_VAE_CLASSES else ""
    return (f"{flag}: its {name} is a {cls or 'model of no known class'}, not fluxflow's {EXPECTED.get(name, '')} "
            f"(is it another library's model?){hint}")


def _pickle_only(folder: Path) -> bool:
    return not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin"))


def _size_problems(flag: str, configs: dict) -> list[str]:
    """Configs asking for absurd sizes, or for more weights than this machine's memory, found before building."""
    for name, (_, config) in configs.items():
        if (big := _largest(config)) > LARGEST_SETTING:
            return [f"{flag}: the {name} config asks for a setting of {big:,}; not a model fluxflow builds"]
    import torch

    from ..pipelines.single_file import MODEL_CLASSES

    total = 0
    for name, (cls, config) in configs.items():
        try:
            with torch.device("meta"):  # shapes only: nothing is allocated
                model = MODEL_CLASSES[cls].from_config({k: v for k, v in config.items() if not k.startswith("_")})
        except Exception as err:  # a config the class cannot build: name it
            return [f"{flag}: the {name} config does not build a {cls} ({' '.join(str(err).split())})"]
        total += sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if total > memory:
        return [f"{flag}: its configs ask for {total / 2**30:.1f} GiB of weights, more than this machine's "
                f"{memory / 2**30:.1f} GiB of memory"]
    return []


def _largest(value) -> int:
    if isinstance(value, dict):
        return max((_largest(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return max((_largest(v) for v in value), default=0)
    return abs(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def checkpoint_sizes(path: str) -> tuple[int | None, int | None]:
    """``(VAE downsampling, flow patch size)`` of a valid ``--model_checkpoint``; ``None`` for a model it lacks."""
    configs = checkpoint_configs(local_checkpoint(path))
    vae, transformer = configs.get("vae", (None, None))[1], configs.get("transformer", (None, None))[1]
    down = 2 ** (len(vae["block_out_channels"]) - 1) if vae and "block_out_channels" in vae else None
    return down, transformer.get("patch_size") if transformer else None


def pretrained_vae_problems(name: str, subfolder: str | None = None) -> list[str]:
    """Everything wrong with ``--pretrained_vae_model_name_or_path name`` (and ``--pretrained_vae_subfolder``) that
    can be seen before loading: a folder must hold a ``config.json`` naming a VAE class fluxflow loads and
    safetensors weights. A name that is no path but a valid Hub id is checked when it is loaded."""
    flag = f"{PRETRAINED_VAE_FLAG} {name!r}"
    if not os.path.exists(name):
        return [] if is_repo_id(name) else [f"{flag} does not exist (neither a folder nor a Hub id)"]
    folder = Path(name, subfolder or "")
    if not (folder / "config.json").is_file():
        hint = " (a pipeline folder: add --pretrained_vae_subfolder vae)" if not subfolder and \
            (Path(name) / "vae" / "config.json").is_file() else ""
        return [f"{flag}: {folder} holds no config.json{hint}"]
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [f"{flag}: {folder / 'config.json'} is unreadable ({' '.join(str(err).split())})"]
    cls = config.get("_class_name") if isinstance(config, dict) else None
    if cls not in PRETRAINED_VAE_CLASSES:
        return [f"{flag}: {folder / 'config.json'} names a {cls or 'model of no known class'}, not a VAE fluxflow "
                f"loads ({' or '.join(PRETRAINED_VAE_CLASSES)})"]
    if _pickle_only(folder):
        return [f"{flag}: {folder} holds only pickled .bin weights; fluxflow loads safetensors (unpickling can run "
                "code): re-save it with save_pretrained(..., safe_serialization=True)"]
    if not any(folder.glob("*.safetensors")):
        return [f"{flag}: {folder} holds no .safetensors weights"]
    return _size_problems(flag, {"vae": (cls, config)})




def pretrained_vae_downsampling(name: str, subfolder: str | None = None) -> int:
    """The downsampling of a valid local pretrained VAE folder, from its config (or its class's default stages) as
    diffusers computes it."""
    import inspect

    from ..pipelines.single_file import MODEL_CLASSES

    config = json.loads(Path(name, subfolder or "", "config.json").read_text(encoding="utf-8"))
    default = inspect.signature(MODEL_CLASSES[config["_class_name"]]).parameters["block_out_channels"].default
    return 2 ** (len(config.get("block_out_channels", default)) - 1)
