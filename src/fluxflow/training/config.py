"""The one schema of `fluxflow-train`: every flag is a field here; argparse and `--config` files follow it.

Each field's metadata holds its help text, the ``Field`` its value is checked against (``schema.py``, the
engine the optimizer/scheduler config uses too) and any alias. :meth:`TrainConfig.validate` names every bad
flag before anything is built, and loads the optimizer/scheduler config once. Parsing (argparse, config
files, precedence) lives in ``arguments.py``.
"""

from __future__ import annotations

import importlib.util
import math
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..models.layers import ACTIVATIONS
from ..models.presets import PRESETS
from ..models.transformer import PATCH_SIZES
from .checkpoint_check import (checkpoint_problems, checkpoint_sizes, pretrained_vae_downsampling,
                               pretrained_vae_problems)
from .data import DataConfig, image_file_problem
from .data.config import has_metadata
from .errors import ConfigError, did_you_mean
from .lora import LORA_TARGETS, lora_problems
from .optim import DEFAULT_LR, OptimSchedConfig, load_optim_sched_config
from .schema import COUNT, NON_NEGATIVE, POSITIVE, STEPS, UNIT, Field, check_value, flag, list_flag

MIXED_PRECISION = ("no", "fp16", "bf16")
TRACKERS = ("tensorboard", "wandb")  # --report_to names
NUMBER = Field("float")  # any finite number

logger = logging.getLogger("fluxflow.train")
_SECRET = re.compile(r"hf_[A-Za-z0-9]{16,}|(?<=://)[^/@\s:]+:[^/@\s]+(?=@)")


def _mask_secrets(value):
    if isinstance(value, str):
        return _SECRET.sub("***", value)
    if isinstance(value, list):
        return [_mask_secrets(v) for v in value]
    return value


def _choice(*choices) -> Field:
    return Field("choice", choices=tuple(choices))


@dataclass
class TrainConfig(DataConfig):
    """All options of a training run (the data options come from :class:`DataConfig`)."""

    # --- training modes
    train_vae: bool = flag(False, "Train the VAE (compressor + expander): reconstruction + KL")
    gan_training: bool = flag(False, "Adversarial VAE training with the PatchDiscriminator (alone: GAN-only mode)")
    train_spade: bool = flag(False, "Decode with SPADE context while training (alone: train only the SPADE layers)")
    train_diff: bool = flag(False, "Train the flow processor on the low-noise part of the schedule")
    train_diff_full: bool = flag(False, "Train the flow processor over the full noise range")
    # --- optimisation
    optim_sched_config: str | None = flag(None, "JSON/YAML file of per-component optimizers and LR schedulers "
                                                "(docs/SCHEDULERS.md)")
    n_epochs: int = flag(1, "Number of passes over the training data", STEPS)
    max_train_steps: int | None = flag(None, "Stop after this many optimizer steps (overrides --n_epochs; "
                                             "required with --streaming)", STEPS)
    batch_size: int = flag(2, "Images per process per forward pass", STEPS)
    lr: float = flag(DEFAULT_LR, "Learning rate of components whose config gives none (text encoder: a tenth)",
                     POSITIVE)
    training_steps: int = flag(1, "Gradient accumulation: batches per optimizer step", STEPS,
                               aliases=("gradient_accumulation_steps",))
    scale_lr: bool = flag(False, "Multiply learning rates by the effective batch (batch_size x processes x "
                                 "training_steps), as the diffusers scripts do")
    max_grad_norm: float = flag(1.0, "Clip each model's gradient norm to this (0: no clipping)", NON_NEGATIVE)
    max_nonfinite_steps: int = flag(10, "A step with a non-finite loss or gradient is skipped; this many in a row "
                                        "stop the run (the last checkpoint is kept)", STEPS)
    use_fp16: bool = flag(False, "fp16 mixed precision (the same as --mixed_precision fp16)")
    mixed_precision: str = flag("no", "Mixed precision of the Accelerator", _choice(*MIXED_PRECISION))
    gradient_checkpointing: bool = flag(False, "Recompute activations in backward to save memory")
    torch_compile: bool = flag(False, "torch.compile the repeated transformer and VAE blocks (regional "
                                      "compilation, as diffusers' compile_repeated_blocks)")
    allow_tf32: bool = flag(False, "Allow TF32 matmuls and convolutions on Ampere+ GPUs (faster, slightly less "
                                   "precise)")
    workers: int = flag(1, "DataLoader worker processes (0: load in the main process)", COUNT)
    # --- losses
    kl_beta: float = flag(1e-4, "Final KL divergence weight", NON_NEGATIVE)
    kl_warmup_steps: int = flag(5000, "Optimizer steps to raise the KL weight linearly from 0 to --kl_beta", COUNT)
    kl_free_bits: float = flag(0.0, "Free bits (nats per latent channel): KL below this is not penalised",
                               NON_NEGATIVE)
    lambda_adv: float = flag(0.5, "Adversarial (GAN) loss weight of the generator", NON_NEGATIVE)
    disc_start: int = flag(0, "Optimizer steps before the discriminator trains and the adversarial term counts "
                              "(diffusers' autoencoderkl --disc_start)", COUNT)
    l1_weight: float = flag(1.0, "Weight of the L1 reconstruction term", NON_NEGATIVE)
    mse_weight: float = flag(1.0, "Weight of the MSE reconstruction term", NON_NEGATIVE)
    # --- flow training (stage 2)
    diff_max_sigma: float = flag(0.3, "--train_diff trains only noise levels s <= this (the low-noise, detail "
                                      "end)", UNIT)
    weighting_scheme: str = flag("logit_normal", "Noise-level sampling and loss weighting of the flow loss, "
                                                 "diffusers' SD3 schemes (compute_density_for_timestep_sampling, "
                                                 "compute_loss_weighting_for_sd3)",
                                 _choice("logit_normal", "mode", "cosmap", "sigma_sqrt", "none"))
    logit_mean: float = flag(0.0, "Mean of the logit-normal noise-level sampling", NUMBER)
    logit_std: float = flag(1.0, "Standard deviation of the logit-normal noise-level sampling", NON_NEGATIVE)
    mode_scale: float = flag(1.29, "Scale of --weighting_scheme mode (diffusers' default)", NUMBER)
    timestep_shift: float = flag(1.0, "Shift s' = shift*s/(1+(shift-1)*s) of training noise levels; saved as the "
                                      "sampling scheduler's shift", POSITIVE)
    cfg_dropout_prob: float = flag(0.1, "Probability of training a sample on the empty prompt (for "
                                        "classifier-free guidance)", UNIT)
    train_text_encoder: bool = flag(False, "Train the text encoder's projection heads with the flow processor "
                                           "(its own optimizer/scheduler: component 'text_encoder')")
    text_encoder_name: str | None = flag(None, "Pretrained text backbone (Hub id or folder); default: the bundled "
                                               "all-MiniLM-L6-v2 (the 'tiny' preset uses a small random one)")
    cache_text_embeddings: bool = flag(False, "With a frozen text encoder: encode each distinct caption once and "
                                              "reuse it (memory grows with the number of distinct captions)")
    cache_latents: bool = flag(False, "Flow training with a frozen VAE: encode every image (and, with a frozen text "
                                      "encoder, every caption) once into a cache on disk, reused by later runs while "
                                      "its inputs are unchanged (docs/DATA.md)")
    cache_dir: str | None = flag(None, "Folder of latent caches (default: $FLUXFLOW_CACHE/latents, else "
                                       "~/.cache/fluxflow/latents)")
    max_sequence_length: int | None = flag(None, "Token length of captions for a new text encoder (default: the "
                                                 "preset's, 77); saved in its config, so the pipeline uses it too",
                                           Field("int", 4, 512))
    use_ema: bool = flag(False, "Keep an exponential moving average of the flow processor (used for samples and "
                                "the exported pipeline)")
    ema_decay: float = flag(0.9999, "EMA decay per optimizer step", UNIT)
    sample_sizes: list[int] = list_flag([], "Square sizes of flow samples (default: --img_size)")
    sample_steps: int = flag(28, "Sampling steps of flow samples", STEPS)
    sample_guidance_scale: float = flag(5.0, "Classifier-free guidance of flow samples", NUMBER)
    # --- models
    model_preset: str = flag("base", "Model sizes (docs/ARCHITECTURE.md)", _choice(*PRESETS))
    activation: str | None = flag(None, "Activation of a new VAE and flow processor (default: SiLU in the VAE, GELU in "
                                        "the flow processor, as measured in docs/BENCHMARKS.md)",
                                  _choice(*ACTIVATIONS))
    vae_block_out_channels: list[int] = list_flag([], "Channels of a new VAE's stages; n stages downsample "
                                                      "2^(n-1)x (default: the preset's, 4 stages)")
    vae_latent_channels: int | None = flag(None, "Latent channels of a new VAE (default: the preset's, 16; the flow "
                                                 "processor takes as many)", STEPS)
    flow_patch_size: int | None = flag(None, "Patch size of a new flow processor: 1, 2 or 4 (default: the preset's, "
                                             "2)", _choice(*PATCH_SIZES))
    flow_hidden_size: int | None = flag(None, "Width of a new flow processor (default: the preset's)", STEPS)
    flow_num_layers: int | None = flag(None, "Blocks of a new flow processor (default: the preset's)", STEPS)
    flow_mlp_ratio: float | None = flag(None, "MLP width / width of a new flow processor (default: the preset's, "
                                              "2; a Bezier MLP has 3x the parameters of a GELU one of the same "
                                              "ratio)", Field("float", 0.25, 64))
    tokenizer_name: str = flag("distilbert-base-uncased", "Tokenizer (Hub id or folder); offline, the BERT-uncased "
                                                          "vocabulary of the bundled all-MiniLM-L6-v2 is used")
    model_checkpoint: str | None = flag(None, "Initialise weights from a checkpoint.safetensors, a pipeline folder "
                                              "or a Hub repo id (the base of a LoRA run)",
                                        aliases=("pretrained_model_name_or_path",))
    pretrained_vae_model_name_or_path: str | None = flag(
        None, "A pretrained VAE (folder or Hub id: a diffusers AutoencoderKL such as an SD3/Flux one, or a "
              "FluxFlowVAE), frozen, for flow training (stage 2); it replaces a --model_checkpoint's VAE")
    pretrained_vae_subfolder: str | None = flag(None, "Subfolder of --pretrained_vae_model_name_or_path that holds "
                                                      "the VAE (e.g. 'vae' of a pipeline)")
    # --- LoRA fine-tuning of a trained flow processor
    lora_rank: int = flag(0, "Train a LoRA adapter of this rank on the --model_checkpoint's flow processor, which "
                             "stays frozen; only the adapter is saved (0: no LoRA)", COUNT)
    lora_alpha: float | None = flag(None, "LoRA scale numerator: the adapter's update is scaled by alpha / rank "
                                          "(default: --lora_rank, a scale of 1)", POSITIVE)
    lora_target_modules: list[str] = list_flag(list(LORA_TARGETS), "Linear layers of the flow processor that get "
                                               "an adapter, by name or dotted suffix (default: attention and MLP "
                                               "projections)")
    # --- checkpoints, logs, samples
    output_path: str = flag("outputs", "Folder for checkpoints, state, samples and logs")
    log_interval: int = flag(10, "Log metrics every N optimizer steps", STEPS)
    checkpoint_save_interval: int = flag(50, "Save a checkpoint every N optimizer steps", STEPS)
    checkpoints_total_limit: int | None = flag(None, "Keep at most this many state/checkpoint-* folders", STEPS)
    resume_from_checkpoint: str | None = flag(None, "'latest' or a state/checkpoint-* folder to continue from")
    preserve_lr: bool = flag(False, "Start from the learning rates saved in output_path/lr_sav.json")
    samples_per_checkpoint: int = flag(1, "Write samples every N checkpoint saves", STEPS)
    no_samples: bool = flag(False, "Write no samples")
    test_image_address: list[str] = list_flag([], "Images for VAE reconstruction samples (default: a few "
                                                  "training images)")
    sample_captions: list[str] = list_flag(["A sample caption"], "Captions for flow samples")
    report_to: str = flag("none", "Experiment trackers, comma-separated (tensorboard, wandb), 'all' (every "
                                  "installed one) or 'none'; they get scalars, validation metrics and sample grids")
    tracker_project_name: str = flag("fluxflow", "Project name the trackers file the run under", Field("str"))
    tracker_run_name: str | None = flag(None, "Run name in the trackers (default: the --output_path folder's name)",
                                        Field("str"))
    # --- validation
    validation_split: float = flag(0.0, "Hold out this fraction of the training data (chosen by --seed) for "
                                        "validation", Field("float", 0, 1, high_open=True))
    validation_data_path: str | None = flag(None, "Validation images: a folder read like --data_path (metadata.jsonl "
                                                  "/ .csv captions, or --captions_file's name inside it)")
    validation_dataset_name: str | None = flag(None, "Validation data: a `datasets` data set read like "
                                                     "--dataset_name (split: --validation_dataset_split)")
    validation_dataset_split: str = flag("validation", "Split of --validation_dataset_name", Field("str"))
    validation_interval: int | None = flag(None, "Validate every N optimizer steps and at the end (default: "
                                                 "--checkpoint_save_interval)", STEPS)
    max_validation_samples: int = flag(32, "Validate on at most this many held-out samples (the first ones)", STEPS)
    validation_judge_prompts: int = flag(8, "On the embedded shapes data: images generated for this many held-out "
                                            "captions and scored by the shapes judge (0: none)", COUNT)
    # --- ending early (a stage's transition in a pipeline file)
    early_stop_metric: str | None = flag(None, "End the run (exports included) when this logged metric, a training "
                                               "loss such as loss/vae or a validation metric such as val/flow/loss, "
                                               "has not improved for --early_stop_patience evaluations", Field("str"))
    early_stop_patience: int = flag(3, "Evaluations of --early_stop_metric without improvement that end the run",
                                    STEPS)
    early_stop_threshold: float = flag(0.0, "The least change of --early_stop_metric that counts as an improvement",
                                       NON_NEGATIVE)
    early_stop_mode: str = flag("min", "Whether --early_stop_metric improves downwards (min: losses) or upwards "
                                       "(max: PSNR, SSIM, judge accuracy)", _choice("min", "max"))
    dry_run: bool = flag(False, "Check the config, print the plan (stages, modes, trained components, optimizers, "
                                "learning rates at start and end, data, steps) and exit without training")
    # --- sharing
    push_to_hub: bool = flag(False, "Upload the exported pipeline/ (with its model card) to the Hub at the end")
    hub_model_id: str | None = flag(None, "Hub repo of --push_to_hub, 'user/name' (default: the --output_path "
                                          "folder's name under your account)")
    hub_token: str | None = flag(None, "Hub token of --push_to_hub (default: the HF_TOKEN / `hf auth login` one); "
                                       "never logged")
    hub_private_repo: bool = flag(False, "Create the --push_to_hub repo as private")
    hub_push_checkpoints: bool = flag(False, "With --push_to_hub: also upload checkpoint.safetensors and the logs at "
                                             "each checkpoint, in the background (training does not wait)")
    plot_graphs: bool = flag(False, "Draw logs/metrics.jsonl into PNGs under logs/graphs/ at every checkpoint "
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

    def public_dict(self) -> dict:
        """The config as saved in ``logs/train_config.json`` and sent to trackers: anything that looks like a
        secret (a Hub token, a password in a URL) is masked, wherever a user put it."""
        return {k: "***" if k == "hub_token" and v else _mask_secrets(v) for k, v in asdict(self).items()}

    @property
    def trackers(self) -> list[str]:
        """``--report_to`` as Accelerate's ``log_with``: the named trackers, every installed one for ``all``."""
        names = [n.strip() for n in self.report_to.split(",") if n.strip() and n.strip() != "none"]
        if names == ["all"]:
            return [n for n in TRACKERS if importlib.util.find_spec(n) is not None]
        return names

    def validation_data_config(self) -> DataConfig:
        """Where the held-out samples come from, read like training data without random crops or flips: this
        config (``build_dataset(part="validation")`` gives what ``--validation_split`` holds out), the
        ``--validation_data_path`` folder (imagefolder captions, else ``--captions_file``'s name inside it), or
        the ``--validation_dataset_name`` split."""
        fixed = {"random_crop": False, "random_flip": False, "aspect_buckets": False, "strict_data": False,
                 "streaming": False}
        if self.validation_split:
            return replace(self, **fixed)
        common = {"img_size": self.img_size, "channels": self.channels, "resize_interpolation":
                  self.resize_interpolation, "max_image_pixels": self.max_image_pixels, "seed": self.seed,
                  "max_train_samples": self.max_validation_samples, **fixed}
        if self.validation_dataset_name:
            return DataConfig(dataset_name=self.validation_dataset_name, dataset_config_name=self.dataset_config_name,
                              dataset_split=self.validation_dataset_split, image_column=self.image_column,
                              caption_column=self.caption_column, **common)
        folder = Path(self.validation_data_path)
        captions = folder / Path(self.captions_file).name if self.captions_file else None
        with_captions_file = captions is not None and captions.is_file() and not has_metadata(str(folder))
        return DataConfig(data_path=str(folder), captions_file=str(captions) if with_captions_file else None,
                          **common)

    @property
    def validates(self) -> bool:
        return bool(self.validation_split or self.validation_data_path or self.validation_dataset_name)

    @property
    def validation_every(self) -> int:
        return self.validation_interval or self.checkpoint_save_interval

    # ------------------------------------------------------------------ validation
    def validate(self, optim: OptimSchedConfig | None = None, *, after_stage: bool = False) -> OptimSchedConfig:
        """Raise :class:`ConfigError` naming every bad flag (reads only the file system); else return the
        optimizer/scheduler config of the run: ``--optim_sched_config`` loaded (once, here), or ``optim`` (the
        sections of the ``--config`` file), or the empty config (every component on its defaults).

        ``after_stage``: a pipeline stage after the first, which starts from the previous stage's weights (not
        written yet): it counts as having a ``--model_checkpoint``, and the sizes are checked by ``stages.py``."""
        sizes = [] if after_stage else self._size_problems()
        problems = [*self._mode_problems(after_stage), *self._field_problems(), *sizes, *self._file_problems()]
        try:
            DataConfig.validate(self)
        except ConfigError as err:
            problems += err.problems
        path = self.optim_sched_config
        if path and not os.path.isfile(path):
            problems.append(f"--optim_sched_config {path!r} is not a file")
        elif path:
            try:
                optim = load_optim_sched_config(path)
            except ConfigError as err:
                problems += [f"--optim_sched_config {path}: {q}" for q in err.problems]
        if problems:
            raise ConfigError(problems)
        return optim or OptimSchedConfig()

    def _mode_problems(self, after_stage: bool = False) -> list[str]:
        p = []
        if not (self.trains_vae or self.trains_flow):
            p.append("no training mode: give at least one of --train_vae, --gan_training, --train_spade, "
                     "--train_diff, --train_diff_full")
        if self.train_diff and self.train_diff_full:
            p.append("--train_diff and --train_diff_full exclude each other: choose the partial or the full schedule")
        if self.trains_flow and not self.train_vae and not (self.model_checkpoint or after_stage) \
                and not self.pretrained_vae_model_name_or_path:
            p.append("flow training without --train_vae needs a trained VAE: give --model_checkpoint (the "
                     "checkpoint.safetensors or vae/ folder of a VAE run) or --pretrained_vae_model_name_or_path")
        p += self._pretrained_vae_problems()
        if self.cache_text_embeddings and (self.train_text_encoder or not self.trains_flow):
            p.append("--cache_text_embeddings needs flow training with a frozen text encoder (no "
                     "--train_text_encoder)")
        if self.cache_latents and (self.trains_vae or not self.trains_flow):
            p.append("--cache_latents needs flow training with a frozen VAE (no --train_vae, --gan_training or "
                     "--train_spade): the cache holds what the VAE gave when it was built")
        if self.cache_latents and self.streaming:
            p.append("--cache_latents needs a map-style data set, not --streaming (a stream has no fixed set of "
                     "samples to encode once)")
        if self.cache_latents and self.random_crop:
            p.append("--cache_latents cannot hold a new random crop per epoch: drop --random_crop (flips are "
                     "cached, both ways) or the cache")
        if self.gan_training and self.disc_start and not self.train_vae:
            p.append(f"--disc_start {self.disc_start} with --gan_training alone: the GAN rests for those steps and "
                     "nothing else trains; add --train_vae or drop --disc_start")
        # SD3 (section 3.1): the mode density maps [0, 1) into (0, 1] monotonically only for these scales
        if self.weighting_scheme == "mode" and not -1 < self.mode_scale <= 2 / (math.pi - 2):
            p.append(f"--mode_scale {self.mode_scale}: --weighting_scheme mode needs a scale in (-1, 1.7519] "
                     "(2/(pi-2)), else its noise levels leave (0, 1]")
        if self.train_text_encoder and not self.trains_flow:
            p.append("--train_text_encoder needs --train_diff or --train_diff_full")
        if self.use_fp16 and self.mixed_precision not in ("no", "fp16"):
            p.append(f"--use_fp16 conflicts with --mixed_precision {self.mixed_precision}")
        if self.streaming and self.max_train_steps is None:
            p.append("--streaming needs --max_train_steps (a streamed data set has no length)")
        p += lora_problems(self, after_stage)
        if self.train_vae and self.l1_weight == 0 and self.mse_weight == 0:
            p.append("--train_vae with --l1_weight 0 and --mse_weight 0 has no reconstruction loss")
        return p

    def _pretrained_vae_problems(self) -> list[str]:
        """A pretrained VAE is frozen: it serves flow training only, and no flag that shapes a new VAE applies."""
        if not self.pretrained_vae_model_name_or_path:
            return ["--pretrained_vae_subfolder needs --pretrained_vae_model_name_or_path"] \
                if self.pretrained_vae_subfolder else []
        trained = [f"--{name}" for name in ("train_vae", "gan_training", "train_spade") if getattr(self, name)]
        p = [f"--pretrained_vae_model_name_or_path is a frozen VAE for flow training (stage 2): it excludes "
             f"{', '.join(trained)}; train a FluxFlowVAE without it"] if trained else []
        p += [f"--{name} shapes a new VAE; the --pretrained_vae_model_name_or_path has its own"
              for name in ("vae_block_out_channels", "vae_latent_channels") if getattr(self, name)]
        return p

    def _field_problems(self) -> list[str]:
        """Each value against the ``Field`` in its metadata (``None``: the flag's "not given"), and the lists."""
        p: list[str] = []
        own = [f for f in fields(TrainConfig) if f.name not in DataConfig.__dataclass_fields__]  # data: its own
        for f in own:
            check, value = f.metadata.get("check"), getattr(self, f.name)
            if check is not None and value is not None:
                check_value(f"--{f.name}", value, check, p)
        if any(c < 1 for c in self.vae_block_out_channels):
            p.append(f"--vae_block_out_channels must be positive, got {self.vae_block_out_channels}")
        p += [f"--sample_sizes entries must be positive multiples of 16, got {size}" for size in self.sample_sizes
              if size < 16 or size % 16]
        return p

    def _size_problems(self) -> list[str]:
        """Image sides the models take: multiples of the VAE's downsampling, times the flow's patch size when
        the flow trains (else the first batch fails inside a model). The sizes come from the
        ``--pretrained_vae_model_name_or_path`` (a folder; a Hub id's VAE is checked when loaded) and the
        ``--model_checkpoint``'s models where they have them, else from the preset and the size flags."""
        if self.model_preset not in PRESETS or self.flow_patch_size not in (None, *PATCH_SIZES):
            return []  # a bad preset or patch size is named elsewhere
        from ..models.presets import preset_config

        down = patch = None
        if self.model_checkpoint:
            if checkpoint_problems(self.model_checkpoint):
                return []  # named by _file_problems
            down, patch = checkpoint_sizes(self.model_checkpoint)
        if self.pretrained_vae_model_name_or_path:
            name, subfolder = self.pretrained_vae_model_name_or_path, self.pretrained_vae_subfolder
            if pretrained_vae_problems(name, subfolder) or not os.path.exists(name):
                return []  # named by _file_problems, or a Hub id: image_size_problems once it is loaded
            down = pretrained_vae_downsampling(name, subfolder)
        stages = self.vae_block_out_channels or preset_config(self.model_preset, "vae")["block_out_channels"]
        down = down or 2 ** (len(stages) - 1)
        patch = patch or self.flow_patch_size or preset_config(self.model_preset, "transformer")["patch_size"]
        return self.image_size_problems(down, patch)

    def image_size_problems(self, down: int, patch: int) -> list[str]:
        """``--img_size`` (or ``--bucket_step``) against a VAE that downsamples ``down``x and a flow processor
        taking ``patch`` x ``patch`` patches (when the flow trains)."""
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
        p = [f"--test_image_address {problem}" for path in self.test_image_address
             if (problem := image_file_problem(path, self.max_image_pixels, self.channels))]
        p += checkpoint_problems(self.model_checkpoint) if self.model_checkpoint else []
        if self.pretrained_vae_model_name_or_path:
            p += pretrained_vae_problems(self.pretrained_vae_model_name_or_path, self.pretrained_vae_subfolder)
        resume = self.resume_from_checkpoint
        if resume and resume != "latest" and not os.path.isdir(resume):
            p.append(f"--resume_from_checkpoint must be 'latest' or a state/checkpoint-* folder, got {resume!r}")
        elif resume and resume != "latest" and not any(Path(resume).iterdir()):
            p.append(f"--resume_from_checkpoint {resume!r} is an empty folder, not a saved state")
        return p + self._tracker_problems() + self._validation_problems() + self._output_problems()

    def _tracker_problems(self) -> list[str]:
        """Each ``--report_to`` name known and installed (the extra that brings it named)."""
        names = [n.strip() for n in self.report_to.split(",") if n.strip()]
        allowed = ("none", "all", *TRACKERS)
        p = [f"--report_to: {n!r} is not a tracker; use one or more of {', '.join(TRACKERS)} (comma-separated), "
             f"'all' or 'none'{did_you_mean(n, list(allowed))}" for n in names if n not in allowed]
        if not names or (len(names) > 1 and ({"none", "all"} & set(names))):
            p.append(f"--report_to {self.report_to!r}: give tracker names, 'all' or 'none'")
        p += [f"--report_to {n} needs the {n!r} package: pip install 'fluxflow[{n}]'" for n in names
              if n in TRACKERS and importlib.util.find_spec(n) is None]
        return p

    def _validation_problems(self) -> list[str]:
        given = [f"--{n}" for n in ("validation_split", "validation_data_path", "validation_dataset_name")
                 if getattr(self, n)]
        p = [f"{' and '.join(given)} exclude each other: give one source of validation data"] if len(given) > 1 else []
        if self.validation_split and self.streaming:
            p.append("--validation_split needs a map-style data set, not --streaming: give --validation_data_path "
                     "or --validation_dataset_name")
        if self.validation_data_path and not os.path.isdir(self.validation_data_path):
            p.append(f"--validation_data_path {self.validation_data_path!r} is not a folder")
        elif len(given) == 1 and not self.validation_split:
            try:
                self.validation_data_config().validate()
            except ConfigError as err:
                p += [f"validation data ({given[0]}): {q}" for q in err.problems]
        if self.validates and self.trains_vae and importlib.util.find_spec("torchmetrics") is None:
            p.append("validating a VAE (PSNR, SSIM, MS-SSIM) needs torchmetrics: pip install 'fluxflow[metrics]'")
        metric = self.early_stop_metric
        if metric and not metric.startswith(("loss/", "val/")):
            p.append(f"--early_stop_metric {metric!r}: give a training loss (loss/vae, loss/flow, ...) or a "
                     "validation metric (val/flow/loss, val/vae/psnr, ...)")
        elif metric and metric.startswith("val/") and not self.validates:
            p.append(f"--early_stop_metric {metric} is a validation metric: give --validation_split, "
                     "--validation_data_path or --validation_dataset_name")
        if self.hub_push_checkpoints and not self.push_to_hub:
            p.append("--hub_push_checkpoints needs --push_to_hub")
        if self.hub_model_id and not self.push_to_hub:
            p.append("--hub_model_id needs --push_to_hub")
        return p

    def _output_problems(self) -> list[str]:
        """``--output_path`` (and ``--cache_dir`` of a cached run) must be folders, or creatable."""
        p = folder_problems("--output_path", self.output_path)
        if self.cache_latents and self.cache_dir:
            p += folder_problems("--cache_dir", self.cache_dir)
        return p


def folder_problems(flag: str, path: str) -> list[str]:
    """``path`` must be a folder, or creatable in the nearest existing folder above it (checked for real: root
    passes ``os.access`` everywhere, and only a try shows a read-only file system)."""
    out = Path(path)
    existing = next((d for d in (out, *out.parents) if _exists(d)), None)
    if existing is None:
        return []
    if existing == out and not out.is_dir():
        return [f"{flag} {path!r} is a file, not a folder"]
    if not existing.is_dir():
        return [f"{flag} {path!r} cannot be created: {str(existing)!r} is a file"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{flag} {path!r} is not writable ({existing} is read-only)"]
    longest = os.pathconf(existing, "PC_NAME_MAX")
    too_long = [part for part in out.relative_to(existing).parts if len(os.fsencode(part)) > longest]
    if too_long:
        return [f"{flag} {path!r} cannot be created: {too_long[0][:40]!r}... is longer than the {longest} bytes "
                "a name may have here"]
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".fluxflow-check-", dir=existing))
    except OSError as err:
        return [f"{flag} {path!r} cannot be created in {existing}: {err.strerror}"]
    return []

def _exists(path: Path) -> bool:
    """``path.exists()``, false for a name the file system refuses (too long, ...) instead of raising."""
    try:
        return path.exists()
    except OSError:
        return False
