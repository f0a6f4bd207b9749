"""The one schema of `fluxflow-train`: every flag is a field here; argparse and `--config` files follow it.

Precedence: built-in default < `--config FILE` (YAML or JSON) < command line. A config file uses the field
names as keys, flat or grouped under `data:`, `model:`, `training:`, `output:` for readability, and may hold
the optimizer/scheduler sections (`optimizers:`, `schedulers:`, `scheduler_config:`). Unknown keys are
errors with the closest name. :meth:`TrainConfig.validate` names every bad flag before anything is built.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .data.config import DataConfig, _f
from .errors import ConfigError, did_you_mean
from .optim_config import load_optim_sched_config
from .optim_config import read_config_file as read_structured_file

MIXED_PRECISION = ("no", "fp16", "bf16")
REPORT_TO = ("none", "tensorboard", "wandb")
PRESETS = ("tiny", "small", "base")
ACTIVATIONS = ("bezier", "silu", "gelu")
GROUPS = ("data", "model", "training", "output")
OPTIM_SECTIONS = ("optimizers", "schedulers", "scheduler_config")


_SECRET = re.compile(r"hf_[A-Za-z0-9]{16,}|(?<=://)[^/@\s:]+:[^/@\s]+(?=@)")


def _mask_secrets(value):
    if isinstance(value, str):
        return _SECRET.sub("***", value)
    if isinstance(value, list):
        return [_mask_secrets(v) for v in value]
    return value


def _list(default: list, help: str):
    return field(default_factory=lambda: list(default), metadata={"help": help})


@dataclass
class TrainConfig(DataConfig):
    """All options of a training run (the data options come from :class:`DataConfig`)."""

    # --- training modes
    train_vae: bool = _f(False, "Train the VAE (compressor + expander): reconstruction + KL")
    gan_training: bool = _f(False, "Adversarial VAE training with the PatchDiscriminator (alone: GAN-only mode)")
    train_spade: bool = _f(False, "Decode with SPADE context while training (alone: train only the SPADE layers)")
    train_diff: bool = _f(False, "Train the flow processor on the low-noise part of the schedule")
    train_diff_full: bool = _f(False, "Train the flow processor over the full noise range")
    # --- optimisation
    optim_sched_config: str | None = _f(None, "JSON/YAML file of per-component optimizers and LR schedulers "
                                              "(docs/SCHEDULERS.md)")
    n_epochs: int = _f(1, "Number of passes over the training data")
    max_train_steps: int | None = _f(None, "Stop after this many optimizer steps (overrides --n_epochs; "
                                           "required with --streaming)")
    batch_size: int = _f(2, "Images per process per forward pass")
    lr: float | None = _f(None, "Learning rate of components whose config gives none (default 1e-4; text "
                                "encoder: a tenth)")
    training_steps: int = _f(1, "Gradient accumulation: batches per optimizer step")
    scale_lr: bool = _f(False, "Multiply learning rates by the effective batch (batch_size x processes x "
                               "training_steps), as the diffusers scripts do")
    max_grad_norm: float = _f(1.0, "Clip each model's gradient norm to this (0: no clipping)")
    max_nonfinite_steps: int = _f(10, "A step with a non-finite loss or gradient is skipped; this many in a row "
                                      "stop the run (the last checkpoint is kept)")
    use_fp16: bool = _f(False, "fp16 mixed precision (the same as --mixed_precision fp16)")
    mixed_precision: str = _f("no", "Mixed precision of the Accelerator", MIXED_PRECISION)
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory")
    workers: int = _f(1, "DataLoader worker processes (0: load in the main process)")
    # --- losses
    kl_beta: float = _f(1e-4, "Final KL divergence weight")
    kl_warmup_steps: int = _f(5000, "Optimizer steps to raise the KL weight linearly from 0 to --kl_beta")
    kl_free_bits: float = _f(0.0, "Free bits (nats per latent channel): KL below this is not penalised")
    lambda_adv: float = _f(0.5, "Adversarial (GAN) loss weight of the generator")
    l1_weight: float = _f(1.0, "Weight of the L1 reconstruction term")
    mse_weight: float = _f(1.0, "Weight of the MSE reconstruction term")
    # --- flow training (stage 2)
    diff_max_sigma: float = _f(0.3, "--train_diff trains only noise levels s <= this (the low-noise, detail end)")
    logit_mean: float = _f(0.0, "Mean of the logit-normal noise-level sampling")
    logit_std: float = _f(1.0, "Standard deviation of the logit-normal noise-level sampling")
    timestep_shift: float = _f(1.0, "Shift s' = shift*s/(1+(shift-1)*s) of training noise levels; saved as the "
                                    "sampling scheduler's shift")
    cfg_dropout_prob: float = _f(0.1, "Probability of training a sample on the empty prompt (for "
                                      "classifier-free guidance)")
    train_text_encoder: bool = _f(False, "Train the text encoder's projection heads with the flow processor "
                                         "(its own optimizer/scheduler: component 'text_encoder')")
    text_encoder_name: str | None = _f(None, "Pretrained text backbone (Hub id or folder); default: the bundled "
                                             "all-MiniLM-L6-v2 (the 'tiny' preset uses a small random one)")
    cache_text_embeddings: bool = _f(False, "With a frozen text encoder: encode each distinct caption once and "
                                            "reuse it (memory grows with the number of distinct captions)")
    max_sequence_length: int | None = _f(None, "Token length of captions for a new text encoder (default: the "
                                               "preset's, 77); saved in its config, so the pipeline uses it too")
    use_ema: bool = _f(False, "Keep an exponential moving average of the flow processor (used for samples and "
                              "the exported pipeline)")
    ema_decay: float = _f(0.9999, "EMA decay per optimizer step")
    sample_sizes: list[int] = field(default_factory=list, metadata={
        "help": "Square sizes of flow samples (default: --img_size)"})
    sample_steps: int = _f(28, "Sampling steps of flow samples")
    sample_guidance_scale: float = _f(5.0, "Classifier-free guidance of flow samples")
    # --- models
    model_preset: str = _f("base", "Model sizes (docs/ARCHITECTURE.md)", PRESETS)
    activation: str | None = _f(None, "Activation of the VAE and flow processor (default: the preset's, bezier)",
                                ACTIVATIONS)
    vae_block_out_channels: list[int] = field(default_factory=list, metadata={
        "help": "Channels of a new VAE's stages; n stages downsample 2^(n-1)x (default: the preset's, 4 stages)"})
    flow_patch_size: int | None = _f(None, "Patch size of a new flow processor: 1 or 2 (default: the preset's, 2)")
    flow_hidden_size: int | None = _f(None, "Width of a new flow processor (default: the preset's)")
    flow_num_layers: int | None = _f(None, "Blocks of a new flow processor (default: the preset's)")
    flow_mlp_ratio: float | None = _f(None, "MLP width / width of a new flow processor (default: the preset's, 2; "
                                            "a Bezier MLP has 3x the parameters of a GELU one of the same ratio)")
    tokenizer_name: str = _f("distilbert-base-uncased", "Tokenizer (Hub id or folder); offline, the BERT-uncased "
                                                        "vocabulary of the bundled all-MiniLM-L6-v2 is used")
    model_checkpoint: str | None = _f(None, "Initialise weights from a checkpoint.safetensors (or a pipeline folder)")
    # --- checkpoints, logs, samples
    output_path: str = _f("outputs", "Folder for checkpoints, state, samples and logs")
    log_interval: int = _f(10, "Log metrics every N optimizer steps")
    checkpoint_save_interval: int = _f(50, "Save a checkpoint every N optimizer steps")
    checkpoints_total_limit: int | None = _f(None, "Keep at most this many state/checkpoint-* folders")
    resume_from_checkpoint: str | None = _f(None, "'latest' or a state/checkpoint-* folder to continue from")
    preserve_lr: bool = _f(False, "Start from the learning rates saved in output_path/lr_sav.json")
    samples_per_checkpoint: int = _f(1, "Write samples every N checkpoint saves")
    no_samples: bool = _f(False, "Write no samples")
    test_image_address: list[str] = _list([], "Images for VAE reconstruction samples (default: a few training "
                                              "images)")
    sample_captions: list[str] = _list(["A sample caption"], "Captions for flow samples")
    report_to: str = _f("none", "Experiment tracker", REPORT_TO)
    plot_graphs: bool = _f(False, "Draw logs/metrics.jsonl into PNGs under logs/graphs/ at every checkpoint "
                                  "(or later: fluxflow-plot-metrics OUTPUT_PATH)")

    # ------------------------------------------------------------------ derived values
    @property
    def precision(self) -> str:
        return "fp16" if self.use_fp16 else self.mixed_precision

    @property
    def trains_flow(self) -> bool:
        return self.train_diff or self.train_diff_full

    @property
    def trains_vae(self) -> bool:
        return self.train_vae or self.gan_training or self.train_spade

    def to_dict(self) -> dict:
        return asdict(self)

    def public_dict(self) -> dict:
        """The config as saved in ``logs/train_config.json`` and sent to trackers: anything that looks like a
        secret (a Hub token, a password in a URL) is masked, wherever a user put it."""
        return {k: _mask_secrets(v) for k, v in self.to_dict().items()}

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every bad flag; reads only the file system."""
        problems = [*self._mode_problems(), *self._range_problems(), *self._size_problems(),
                    *self._file_problems()]
        try:
            DataConfig.validate(self)
        except ConfigError as err:
            problems += err.problems
        if problems:
            raise ConfigError(problems)

    def _mode_problems(self) -> list[str]:
        p = []
        if not (self.trains_vae or self.trains_flow):
            p.append("no training mode: give at least one of --train_vae, --gan_training, --train_spade, "
                     "--train_diff, --train_diff_full")
        if self.train_diff and self.train_diff_full:
            p.append("--train_diff and --train_diff_full exclude each other: choose the partial or the full schedule")
        if self.trains_flow and not self.train_vae and not self.model_checkpoint:
            p.append("flow training without --train_vae needs a trained VAE: give --model_checkpoint (the "
                     "checkpoint.safetensors or vae/ folder of a VAE run)")
        if self.cache_text_embeddings and (self.train_text_encoder or not self.trains_flow):
            p.append("--cache_text_embeddings needs flow training with a frozen text encoder (no "
                     "--train_text_encoder)")
        if self.train_text_encoder and not self.trains_flow:
            p.append("--train_text_encoder needs --train_diff or --train_diff_full")
        if self.use_fp16 and self.mixed_precision not in ("no", "fp16"):
            p.append(f"--use_fp16 conflicts with --mixed_precision {self.mixed_precision}")
        if self.streaming and self.max_train_steps is None:
            p.append("--streaming needs --max_train_steps (a streamed data set has no length)")
        return p

    def _range_problems(self) -> list[str]:
        """Values outside their range; a NaN or infinite number is named once, as such (it slips past `<`)."""
        nonfinite = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float)
                     and not math.isfinite(getattr(self, f.name))]
        p = [f"--{k} must be a finite number, got {getattr(self, k)}" for k in nonfinite]
        return p + [problem for problem in self._bound_problems()
                    if problem.split(" ", 1)[0].removeprefix("--") not in nonfinite]

    def _bound_problems(self) -> list[str]:
        at_least = {"n_epochs": 1, "batch_size": 1, "training_steps": 1, "log_interval": 1,
                    "checkpoint_save_interval": 1, "samples_per_checkpoint": 1, "workers": 0,
                    "kl_warmup_steps": 0, "max_train_steps": 1, "max_nonfinite_steps": 1,
                    "checkpoints_total_limit": 1}
        p = [f"--{k} must be >= {low}, got {getattr(self, k)}" for k, low in at_least.items()
             if getattr(self, k) is not None and getattr(self, k) < low]
        for k in ("kl_beta", "kl_free_bits", "lambda_adv", "l1_weight", "mse_weight", "max_grad_norm", "logit_std"):
            if getattr(self, k) < 0:
                p.append(f"--{k} must be >= 0, got {getattr(self, k)}")
        for k, low, high in (("diff_max_sigma", 0.0, 1.0), ("cfg_dropout_prob", 0.0, 1.0), ("ema_decay", 0.0, 1.0)):
            if not low <= getattr(self, k) <= high:
                p.append(f"--{k} must be in [{low}, {high}], got {getattr(self, k)}")
        if self.timestep_shift <= 0:
            p.append(f"--timestep_shift must be > 0, got {self.timestep_shift}")
        if any(c < 1 for c in self.vae_block_out_channels):
            p.append(f"--vae_block_out_channels must be positive, got {self.vae_block_out_channels}")
        if self.flow_patch_size not in (None, 1, 2):
            p.append(f"--flow_patch_size must be 1 or 2, got {self.flow_patch_size}")
        for k in ("flow_hidden_size", "flow_num_layers"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                p.append(f"--{k} must be >= 1, got {getattr(self, k)}")
        if self.flow_mlp_ratio is not None and not 0.25 <= self.flow_mlp_ratio <= 64:
            p.append(f"--flow_mlp_ratio must be in [0.25, 64], got {self.flow_mlp_ratio}")
        if self.max_sequence_length is not None and not 4 <= self.max_sequence_length <= 512:
            p.append(f"--max_sequence_length must be in [4, 512], got {self.max_sequence_length}")
        if self.sample_steps < 1:
            p.append(f"--sample_steps must be >= 1, got {self.sample_steps}")
        p += [f"--sample_sizes entries must be positive multiples of 16, got {size}" for size in self.sample_sizes
              if size < 16 or size % 16]
        if self.lr is not None and self.lr <= 0:
            p.append(f"--lr must be > 0, got {self.lr}")
        for k, allowed in (("mixed_precision", MIXED_PRECISION), ("report_to", REPORT_TO),
                           ("model_preset", PRESETS), ("activation", ACTIVATIONS + (None,))):
            if getattr(self, k) not in allowed:
                p.append(f"--{k} must be one of {', '.join(map(str, allowed))}, got {getattr(self, k)!r}")
        if self.train_vae and self.l1_weight == 0 and self.mse_weight == 0:
            p.append("--train_vae with --l1_weight 0 and --mse_weight 0 has no reconstruction loss")
        return p

    def _size_problems(self) -> list[str]:
        """Image sides the models take: multiples of the VAE's downsampling, times the flow's patch size when
        the flow trains (else the first batch fails inside a model)."""
        if self.model_checkpoint or self.model_preset not in PRESETS \
                or self.flow_patch_size not in (None, 1, 2):
            return []  # a checkpoint's models decide; a bad preset or patch size is named elsewhere
        from ..models.presets import preset_config

        stages = self.vae_block_out_channels or preset_config(self.model_preset, "vae")["block_out_channels"]
        down = 2 ** (len(stages) - 1)
        patch = self.flow_patch_size or preset_config(self.model_preset, "transformer")["patch_size"]
        patch = patch if self.trains_flow else 1
        why = f"the VAE downsamples {down}x" + (f", the flow processor takes {patch}x{patch} patches"
                                                 if patch > 1 else "")
        if self.aspect_buckets:  # bucket sides are multiples of --bucket_step (not of 8: named by DataConfig)
            if self.bucket_step >= 8 and not self.bucket_step % 8 and self.bucket_step % (down * patch):
                return [f"--bucket_step must be a multiple of {down * patch} with --aspect_buckets ({why}), "
                        f"got {self.bucket_step}"]
        elif isinstance(self.img_size, int) and self.img_size >= 8 and self.img_size % (down * patch):
            return [f"--img_size must be a multiple of {down * patch} ({why}), got {self.img_size}"]
        return []

    def _file_problems(self) -> list[str]:
        p = [f"--test_image_address {path!r} is not a file" for path in self.test_image_address
             if not os.path.isfile(path)]
        if self.optim_sched_config and not os.path.isfile(self.optim_sched_config):
            p.append(f"--optim_sched_config {self.optim_sched_config!r} is not a file")
        elif self.optim_sched_config:
            try:
                load_optim_sched_config(self.optim_sched_config)
            except ConfigError as err:
                p += [f"--optim_sched_config {self.optim_sched_config}: {q}" for q in err.problems]
        p += self._checkpoint_problems()
        resume = self.resume_from_checkpoint
        if resume and resume != "latest" and not os.path.isdir(resume):
            p.append(f"--resume_from_checkpoint must be 'latest' or a state/checkpoint-* folder, got {resume!r}")
        elif resume and resume != "latest" and not any(Path(resume).iterdir()):
            p.append(f"--resume_from_checkpoint {resume!r} is an empty folder, not a saved state")
        if self.report_to != "none" and importlib.util.find_spec(self.report_to) is None:
            p.append(f"--report_to {self.report_to} needs the {self.report_to!r} package: pip install {self.report_to}")
        return p + self._output_problems()

    def _checkpoint_problems(self) -> list[str]:
        """``--model_checkpoint``: a fluxflow ``.safetensors`` file (its header is read, not its tensors) or a
        pipeline / model folder, as ``load_checkpoint_models`` takes them."""
        path = self.model_checkpoint
        if not path:
            return []
        if not os.path.exists(path):
            return [f"--model_checkpoint {path!r} does not exist"]
        if os.path.isdir(path):
            if not (Path(path, "vae", "config.json").is_file() or Path(path, "config.json").is_file()):
                return [f"--model_checkpoint {path!r} is a folder without vae/config.json or config.json: "
                        f"give a checkpoint.safetensors, a pipeline folder or a vae/ folder"]
            return []
        from ..pipelines.single_file import read_metadata

        try:
            read_metadata(path)
        except Exception as err:  # safetensors raises its own error type for a file that is not safetensors
            return [f"--model_checkpoint {path!r} is not a fluxflow checkpoint.safetensors "
                    f"({' '.join(str(err).split()) or type(err).__name__})"]
        return []

    def _output_problems(self) -> list[str]:
        """``--output_path`` must be a folder, or creatable in the nearest existing folder above it."""
        out = Path(self.output_path)
        existing = next((d for d in (out, *out.parents) if d.exists()), None)
        if existing is None:
            return []
        if existing == out and not out.is_dir():
            return [f"--output_path {self.output_path!r} is a file, not a folder"]
        if not existing.is_dir():
            return [f"--output_path {self.output_path!r} cannot be created: {str(existing)!r} is a file"]
        if not os.access(existing, os.W_OK | os.X_OK):
            return [f"--output_path {self.output_path!r} is not writable ({existing} is read-only)"]
        return []


# ---------------------------------------------------------------------- argparse from the schema
def _field_types() -> dict[str, object]:
    return typing.get_type_hints(TrainConfig)


def build_parser(show_defaults: bool = True) -> argparse.ArgumentParser:
    """The `fluxflow-train` parser, one flag per :class:`TrainConfig` field, plus ``--config``."""
    parser = argparse.ArgumentParser(
        prog="fluxflow-train", description="Train fluxflow models (docs/TRAINING.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter if show_defaults else argparse.HelpFormatter,
        argument_default=None if show_defaults else argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML or JSON file with any of these options (the command line wins)")
    types = _field_types()
    for f in fields(TrainConfig):
        kind, kwargs = types[f.name], {"help": f.metadata.get("help", "")}
        default = f.default_factory() if callable(f.default_factory) else f.default
        if show_defaults:
            kwargs["default"] = default
        if kind is bool:
            parser.add_argument(f"--{f.name}", action="store_true", **kwargs)
            continue
        base = _base_type(kind)
        if typing.get_origin(kind) is list or base is list:
            kwargs["nargs"] = "*"
            base = typing.get_args(kind)[0] if typing.get_args(kind) else str
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(f"--{f.name}", type=base, **kwargs)
    return parser


def _base_type(kind) -> type:
    """``int | None`` -> ``int``; ``list[str]`` -> ``list``."""
    if typing.get_origin(kind) is list:
        return list
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def read_config_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(training fields, optimizer/scheduler sections)`` of a YAML/JSON config.

    Every problem of the file is named at once, with its key path (``training.lr``): unknown keys, values of
    the wrong type (``null`` only where a flag's default is ``None``), and the checks of the sections.
    """
    path = Path(path)
    data = read_structured_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping of option names, got {type(data).__name__}",
                          source=str(path))
    names, types = {f.name for f in fields(TrainConfig)}, _field_types()
    values, optim, problems = {}, {}, []
    for key, value in data.items():
        if key in OPTIM_SECTIONS:
            optim[key] = value
        elif key in GROUPS:
            if not isinstance(value, dict):
                problems.append(f"{key} must be a mapping of option names, got {type(value).__name__}")
                continue
            for sub, v in value.items():
                if sub in names:
                    values[sub] = v
                    problems += _type_problems(f"{key}.{sub}", types[sub], v)
                elif sub in OPTIM_SECTIONS:
                    problems.append(f"{key}.{sub}: the {sub} section belongs at the top level, not in {key}")
                else:
                    problems.append(f"{key}.{sub} is not an option{did_you_mean(sub, names)}")
        elif key in names:
            values[key] = value
            problems += _type_problems(str(key), types[key], value)
        else:
            problems.append(f"{key} is not an option{did_you_mean(key, [*names, *OPTIM_SECTIONS, *GROUPS])}")
    if optim:
        try:
            load_optim_sched_config(optim)
        except ConfigError as err:
            problems += err.problems
    if problems:
        raise ConfigError(problems, source=str(path))
    return values, optim


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, dict]:
    """Command line (+ ``--config`` file) -> ``(TrainConfig, optimizer/scheduler sections of the file)``.

    Bad flag values end in argparse's usage error (``SystemExit(2)``); a bad file in a :class:`ConfigError`.
    """
    given = vars(build_parser(show_defaults=False).parse_args(argv))
    values, optim = ({}, {})
    config_file = given.pop("config", None)
    if config_file:
        values, optim = read_config_file(config_file)
    values.update(given)
    if values.get("optim_sched_config") and optim:
        raise ConfigError(f"give the optimizer/scheduler config either with --optim_sched_config or in the "
                          f"--config file ({', '.join(optim)}), not both", source=config_file)
    return TrainConfig(**values), optim


def _type_problems(path: str, kind, value) -> list[str]:
    """``[]`` when ``value`` fits the field type ``kind``, else the one problem naming ``path``."""
    if value is None:
        return [] if type(None) in typing.get_args(kind) else [f"{path} must be {_describe(kind)}, got null"]
    if not _matches(kind, value):
        return [f"{path} must be {_describe(kind)}, got {value!r}"]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path} must be a finite number, got {value}"]
    return []


def _matches(kind, value) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    base = _base_type(kind)
    if base is list:
        item = (typing.get_args(kind) or (str,))[0]
        return isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, base) and not (base is int and isinstance(value, bool))


def _describe(kind) -> str:
    base = _base_type(kind)
    if base is list:
        item = (typing.get_args(kind) or (str,))[0]
        return {int: "a list of integers"}.get(item, "a list of strings")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(base, str(base))


def flags_markdown() -> str:
    """The flag table of docs/TRAINING.md, generated from the schema (a test keeps the two identical)."""
    types = _field_types()
    rows = ["| flag | type | default | meaning |", "|---|---|---|---|"]
    for f in fields(TrainConfig):
        kind = types[f.name]
        default = f.default_factory() if callable(f.default_factory) else f.default
        type_name = "flag" if kind is bool else _describe(kind).removeprefix("a ").removeprefix("an ")
        choices = f.metadata.get("choices")
        meaning = f.metadata.get("help", "") + (f" ({', '.join(map(str, choices))})" if choices else "")
        rows.append(f"| `--{f.name}` | {type_name} | `{default!r}` | {meaning.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m fluxflow.training.config: print the flag table for docs/TRAINING.md
    print(flags_markdown(), end="")
