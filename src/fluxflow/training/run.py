"""A training run: everything the loop needs, built once by :func:`setup_run`, and what it writes.

``Run`` holds the accelerator, the validated config, the models as prepared, optimizers, tokenizer, data,
output folder and progress. Its methods write what a run leaves behind: checkpoints (``checkpoint``),
samples (``save_samples``), the exported pipeline (``export``) and metrics (``log``).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, broadcast_object_list, set_seed
from PIL import Image

from ..atomic import write_text_atomically
from ..pipelines import tokenize_prompts
from ..pipelines.lora import LORA_WEIGHT_NAME
from .checkpoint import (check_free_space, load_state, remove_leftovers, resolve_resume, save_model_folder, save_state,
                         save_weights)
from .components import Components, build_components
from .config import TrainConfig
from .data import CaptionCollator, build_dataset, is_streaming, make_dataloader, prepare_dataloader
from .earlier_run import follow, set_aside_earlier_run
from .errors import ConfigError
from .early_stop import observe
from .export import build_pipeline, ema_copy, ema_weights, export_pipeline, sampling_scheduler, save_flow_samples
from .flow_objective import FlowObjective, TextEmbeddingCache
from .guards import NonFiniteError, agree, nonfinite_weight
from .hub import HubPusher, HubPushError, hub_id, newest_grid
from .latent_statistics import measure_latent_statistics
from .lora import LORA_FOLDER, export_lora, save_lora
from .latent_cache import CachedCollator, build_or_open, default_cache_dir
from .metrics import MetricsLog
from .optim import (LR_FILE, OptimSchedConfig, OptimSchedSet, build_optimizers_and_schedulers, ensure_train_mode,
                    evaluation_mode, load_lrs, save_lrs)
from .progress import TrainProgress
from .grids import flow_grid, save_grid, vae_grid
from .samples import save_vae_samples, to_pil, vae_sample_paths
from .test_images import pick_test_images
from .tokenizer import load_tokenizer
from .trackers import log_images
from .vae_objective import VAEObjective

logger = logging.getLogger("fluxflow.train")
# the validation metrics shown in the log line (all of them go to metrics.jsonl and the trackers)
HEADLINE = ("val/vae/psnr", "val/vae/ssim", "val/vae/kl", "val/judge_recon/accuracy", "val/flow/loss",
            "val/judge/accuracy")


def _averaged(method):
    """Run a ``Run`` method that saves, samples or evaluates with schedule-free optimizers switched to their
    averaged weights (``optim.evaluation_mode``; nothing for every other optimizer)."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with evaluation_mode(self.optim):
            return method(self, *args, **kwargs)
    return wrapped


@dataclass(eq=False)
class Run:
    """One training run as the loop sees it (built by :func:`setup_run`)."""

    accelerator: Accelerator
    cfg: TrainConfig
    out: Path
    models: Components
    optim: OptimSchedSet
    tokenizer: object
    dataset: object
    loader: torch.utils.data.DataLoader
    progress: TrainProgress
    state: dict  # what state/checkpoint-*/run_state.pt holds besides Accelerate's own state
    total_steps: int
    metrics: MetricsLog
    vae_objective: VAEObjective | None
    flow_objective: FlowObjective | None
    test_images: list = field(default_factory=list)
    validator: object | None = None  # validation.Validator of --validation_split / _data_path / _dataset_name
    pusher: HubPusher | None = None  # --push_to_hub, on the main process
    validated_at: int | None = None  # the step of the last validation
    resumed: bool = False

    def batches(self):
        """Micro-batches without end: one epoch after another (a stream starts again, reshuffled), each epoch's
        order a function of the seed and the epoch, starting where ``progress`` says (exact resume)."""
        order = getattr(self.loader, "generator", None)
        buckets = self.loader.batch_sampler if hasattr(self.loader.batch_sampler, "set_epoch") else None
        while True:
            progress = self.progress
            if order is not None:
                order.manual_seed(self.cfg.seed + progress.epoch)
            if buckets is not None:
                buckets.set_epoch(progress.epoch)
            epoch = self.accelerator.skip_first_batches(self.loader, progress.batches_in_epoch) \
                if progress.batches_in_epoch else self.loader
            epoch.set_epoch(progress.epoch)  # Accelerate passes it to the data set (crops, flips)
            for batch in epoch:
                progress.batches_in_epoch += 1
                yield batch
            if progress.batches_in_epoch == 0:
                raise ConfigError("the data set gave no batch: lower --batch_size or check the data")
            progress.epoch += 1
            progress.batches_in_epoch = 0

    # ---------------------------------------------------------------- what a run writes
    def log(self) -> None:
        """Averages of the window since the last line (``progress.window``: saved with checkpoints, so a resumed
        run averages over the same steps), over its micro-batches and over all processes (every process calls
        this); the window starts again."""
        accelerator, cfg, progress = self.accelerator, self.cfg, self.progress
        window, progress.window = progress.window, defaultdict(float)
        n, seconds = max(window.pop("micro_batches", 0), 1), window.pop("seconds", 0.0)
        keys = sorted(window)
        means = torch.tensor([window[k] / n for k in keys], dtype=torch.float64, device=accelerator.device)
        if accelerator.num_processes > 1:
            means = accelerator.reduce(means, reduction="mean")
        values = dict(zip(keys, means.tolist()))
        values.update({f"lr/{name}": lr for name, lr in self.optim.lrs().items()})
        images = n * cfg.batch_size * accelerator.num_processes
        values.update({"epoch": progress.epoch, "skipped_steps": progress.skipped_steps,
                       "step_time": seconds * cfg.training_steps / n,
                       "samples_per_s": images / max(seconds, 1e-9),
                       "samples_per_s_per_process": images / accelerator.num_processes / max(seconds, 1e-9)})
        self.metrics.log(progress.global_step, values)
        observe(cfg, progress.early_stop, progress.global_step, values)  # the same values on every process
        if accelerator.is_main_process:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k.startswith(("loss/", "lr/")))
            logger.info("step %d: %s, %.1f samples/s", progress.global_step, shown, values["samples_per_s"])

    def checkpoint(self) -> None:
        """``checkpoint.safetensors`` (every model, the EMA copy too; schedule-free optimizers' averaged
        weights), ``state/checkpoint-<step>`` (the training point: resumes continue exactly) and
        ``lr_sav.json``; refused when a weight is not finite (the last checkpoint on disk stays)."""
        accelerator, step = self.accelerator, self.progress.global_step
        with evaluation_mode(self.optim):
            models = {name: self._whole(name) for name in self.models.saved()}
            if self.models.ema is not None:
                models["transformer_ema"] = ema_copy(models["transformer"], self.models.ema)
            bad = nonfinite_weight(models) if accelerator.is_main_process else None
            if agree(accelerator, bad is not None)[0]:
                raise NonFiniteError(f"step {step}: {bad or 'a weight (see the main process)'} holds NaN/Inf values; "
                                     "not saving a checkpoint (the last one on disk is kept). Lower --lr or "
                                     "--max_grad_norm and resume with --resume_from_checkpoint latest")
            if self.cfg.lora_rank:  # the adapter only: the base is the --model_checkpoint's, unchanged
                if accelerator.is_main_process:
                    save_lora(self.out / LORA_WEIGHT_NAME, models["transformer"])
                accelerator.wait_for_everyone()
            else:
                scheduler = sampling_scheduler(self.cfg.timestep_shift) if self.models.transformer is not None \
                    else None
                save_weights(accelerator, self.out, models, tokenizer=self.tokenizer, scheduler=scheduler,
                             extra={"global_step": step})
        folder = save_state(accelerator, self.out, step, self.state, self.cfg.checkpoints_total_limit)
        if accelerator.is_main_process:
            save_lrs(self.out / LR_FILE, self.optim)
            logger.info("step %d: checkpoint saved (%s, %s)", step, folder.relative_to(self.out),
                        LORA_WEIGHT_NAME if self.cfg.lora_rank else "checkpoint.safetensors")
            if self.cfg.plot_graphs and (self.out / "logs" / "metrics.jsonl").exists():
                from .graphs import plot_metrics

                plot_metrics(self.out / "logs" / "metrics.jsonl", self.out / "logs" / "graphs")

    @_averaged
    def save_samples(self) -> None:
        """VAE reconstructions of the test images and flow samples of the sample captions, at this step."""
        if self.cfg.no_samples:
            return
        cfg, step = self.cfg, self.progress.global_step
        pipe = self.pipeline() if self.models.transformer is not None else None
        if not self.accelerator.is_main_process:
            return
        folder, grids = self.out / "samples", {}
        if self.test_images:
            save_vae_samples(self.models.unwrapped("vae"), self.test_images, folder, step, seed=cfg.seed)
            grids["vae"] = vae_grid([{"input": to_pil(image), **{suffix: Image.open(path) for suffix, path in
                                                                  vae_sample_paths(folder, step, address).items()}}
                                     for address, image in self.test_images])
        if pipe is not None:
            sizes = cfg.sample_sizes or [cfg.img_size]
            with ema_weights(pipe.transformer, self.models.ema):
                written = save_flow_samples(pipe, cfg.sample_captions, sizes, folder, step, cfg.sample_steps,
                                            cfg.sample_guidance_scale, seed=cfg.seed)
            labels = [caption + (f" ({size} px)" if len(sizes) > 1 else "")
                      for caption in cfg.sample_captions for size in sizes]
            grids["flow"] = flow_grid([Image.open(path) for path in written], labels, columns=max(len(sizes), 4))
        for kind, grid in grids.items():
            save_grid(grid, folder, kind, step)
        log_images(self.accelerator, {f"samples/{kind}": grid for kind, grid in grids.items()}, step)

    @_averaged
    def validate(self) -> None:
        """Metrics of the held-out samples at this step (``validation.Validator``: fixed noise, so the curve is
        not noisy), logged like every metric; the flow processor with its EMA weights, as samples are. Every
        process calls this (FSDP gathers); the main process computes, and shares the values when an
        ``--early_stop_metric`` is a validation metric (every process ends at the same step)."""
        names = ("vae", "transformer", "text_encoder")
        models = {name: self._whole(name) if getattr(self.models, name) is not None else None for name in names}
        step, transformer, values = self.progress.global_step, models["transformer"], {}
        if self.accelerator.is_main_process:
            with ema_weights(transformer, self.models.ema if transformer is not None else None):
                values = self.validator(**models, pipeline_factory=lambda: build_pipeline(
                    models["vae"], transformer, models["text_encoder"], self.tokenizer, self.cfg.timestep_shift))
            self.metrics.log(step, values)
            shown = ", ".join(f"{k.removeprefix('val/')}={values[k]:.4g}" for k in HEADLINE if k in values)
            logger.info("step %d: validation %s (%.1f s)", step, shown, values["val/seconds"])
        self.validated_at = step
        if (self.cfg.early_stop_metric or "").startswith("val/"):
            shared = [values]
            broadcast_object_list(shared)
            observe(self.cfg, self.progress.early_stop, step, shared[0])

    @_averaged
    def export(self) -> None:
        """``vae/`` always; ``pipeline/`` (a complete diffusers folder, EMA weights when EMA is on) with a flow
        processor. The pipeline's default image size is the size the run trained at. A LoRA run exports only its
        adapter, to ``lora/``."""
        if self.cfg.lora_rank:
            self._export_lora()
            return
        if self.accelerator.is_main_process:
            save_model_folder(self.models.unwrapped("vae"), self.out / "vae")
        if self.models.transformer is None:
            return
        pipe = self.pipeline()
        if pipe is None:
            return
        cfg = self.cfg
        pipe.transformer.register_to_config(sample_size=cfg.img_size // pipe.vae_scale_factor)
        bases = [hub_id(cfg.pretrained_vae_model_name_or_path), hub_id(cfg.model_checkpoint)]
        card = {"name": self.out.name, "backbone": pipe.text_encoder.backbone.config.model_type,
                "steps": self.progress.global_step, "data": cfg.dataset_name or cfg.data_path, "size": cfg.img_size,
                "caption": cfg.sample_captions[0], "shift": cfg.timestep_shift,
                "repo_id": self.pusher.repo_id if self.pusher else None, "base_model": [b for b in bases if b] or None}
        with ema_weights(pipe.transformer, self.models.ema):
            export_pipeline(pipe, self.out / "pipeline", card, grid=newest_grid(self.out / "samples", "flow"))

    def _export_lora(self) -> None:
        transformer, cfg = self._whole("transformer"), self.cfg
        if self.accelerator.is_main_process:
            export_lora(self.out / LORA_FOLDER, transformer, base=cfg.model_checkpoint, steps=self.progress.global_step,
                        data=cfg.dataset_name or cfg.data_path, caption=cfg.sample_captions[0],
                        base_is_hub_id=hub_id(cfg.model_checkpoint) is not None,
                        grid=newest_grid(self.out / "samples", "flow"))

    def push(self, final: bool) -> None:
        """``--push_to_hub``: the exported pipeline (or a VAE run's ``vae/``) at the end, blocking; with
        ``--hub_push_checkpoints`` the checkpoint just saved, in the background."""
        if self.pusher is None:
            return
        step = self.progress.global_step
        if not final:
            self.pusher.push_checkpoint(step)
            return
        folder = self.out / (LORA_FOLDER if self.cfg.lora_rank else
                             "pipeline" if self.models.transformer is not None else "vae")
        self.pusher.push_final(step, folder)

    def pipeline(self):
        """A pipeline of the models as they are now (every process calls this; ``None`` off the main process)."""
        transformer, text_encoder = self._whole("transformer"), self._whole("text_encoder")
        if not self.accelerator.is_main_process:
            return None
        return build_pipeline(self.models.unwrapped("vae"), transformer, text_encoder, self.tokenizer,
                              self.cfg.timestep_shift)

    def _whole(self, name: str):
        """Model ``name`` with all its weights. Under FSDP its shards are gathered (a collective: every process
        calls this) into a plain copy on the main process, and the other processes get ``None``."""
        accelerator, base = self.accelerator, self.models.unwrapped(name)
        if accelerator.distributed_type.name != "FSDP" or not any(p.requires_grad for p in base.parameters()):
            return base
        state = accelerator.get_state_dict(getattr(self.models, name))
        if not accelerator.is_main_process:
            return None
        whole = type(base).from_config(base.config)
        whole.load_state_dict(state)
        return whole


# -------------------------------------------------------------------- setup
def setup_run(cfg: TrainConfig, optim_config: OptimSchedConfig | None = None) -> Run:
    """Accelerator, models, data, optimizers, prepared and (with ``--resume_from_checkpoint``) restored.

    ``cfg`` is validated already (``arguments.load_config``), ``optim_config`` is what validation returned."""
    out = Path(cfg.output_path)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.training_steps, mixed_precision=cfg.precision,
        log_with=cfg.trackers or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False if cfg.streaming else None))
    _check_launch(accelerator, cfg)
    cfg.seed = _shared_seed(accelerator, cfg.seed)
    set_seed(cfg.seed)
    resume = resolve_resume(out, cfg.resume_from_checkpoint)
    aside = [None]
    if accelerator.is_main_process:
        remove_leftovers(out)
        if resume is None:
            aside = [set_aside_earlier_run(out, continuing=bool(cfg.model_checkpoint or cfg.preserve_lr))]
    broadcast_object_list(aside)  # every process reads the moved --model_checkpoint and lr_sav.json
    cfg.model_checkpoint = follow(cfg.model_checkpoint, out, aside[0])

    pusher = _hub_pusher(accelerator, cfg, out) if cfg.push_to_hub else None  # before the long work
    models = build_components(cfg)
    tokenizer = load_tokenizer(cfg.tokenizer_name)
    max_length = models.text_encoder.config.max_length if models.text_encoder is not None else 77
    with accelerator.main_process_first():  # a `datasets` cache is written once, then read by the others
        dataset = build_dataset(cfg, process_index=accelerator.process_index, num_processes=accelerator.num_processes)
    collate = CaptionCollator(tokenizer, max_length)
    if cfg.cache_latents:
        dataset = _latent_cache(accelerator, cfg, models, tokenizer, max_length, dataset)
        collate = CachedCollator(tokenizer, max_length)
    loader = make_dataloader(dataset, cfg.batch_size, cfg.workers, collate, seed=cfg.seed)
    test_images = [] if cfg.no_samples or not cfg.trains_vae else pick_test_images(cfg, dataset)
    loader = prepare_dataloader(accelerator, loader)
    total_steps = _run_length(cfg, loader)
    optim = _optimizers(accelerator, cfg, optim_config, models, total_steps, lr_file=(aside[0] or out) / LR_FILE)
    models.prepare(accelerator, use_ema=cfg.use_ema, ema_decay=cfg.ema_decay)
    if models.vae_needs_statistics:  # a pretrained VAE whose config sets no scaling_factor: measured, as stage 1
        _measure_pretrained_statistics(accelerator, models.unwrapped("vae"), loader, cfg.seed)
    for part in optim.values():
        part.optimizer = accelerator.prepare(part.optimizer)

    flow_objective = None
    if cfg.trains_flow:
        text_cache = TextEmbeddingCache(models.text_encoder, tokenizer, max_length) \
            if cfg.cache_text_embeddings else None
        cached_text = dataset.null_text() if cfg.cache_latents and dataset.with_text else None
        flow_objective = FlowObjective(cfg, tokenize_prompts(tokenizer, [""], max_length), text_cache, cached_text)
    validator = _validator(accelerator, cfg, tokenizer, max_length) if cfg.validates else None
    progress = TrainProgress(cfg.seed, accelerator.process_index, accelerator.device)
    state = {"progress": progress, "optim": optim, **({"ema": models.ema} if models.ema is not None else {})}
    if accelerator.is_main_process:
        check_free_space(out, models.saved())
    if resume is not None:
        load_state(accelerator, resume, state)
        ensure_train_mode(optim)  # a state saved in eval mode by an older version trains on
        logger.info("resumed from %s at step %d", resume, progress.global_step)
    _record_config(accelerator, cfg, optim_config, out)
    return Run(accelerator, cfg, out, models, optim, tokenizer, dataset, loader, progress, state, total_steps,
               MetricsLog(accelerator, out / "logs", resumed_at=progress.global_step),
               vae_objective=VAEObjective(cfg) if cfg.trains_vae else None, flow_objective=flow_objective,
               test_images=test_images, validator=validator, pusher=pusher, resumed=resume is not None)


def _hub_pusher(accelerator, cfg: TrainConfig, out: Path) -> HubPusher | None:
    """The run's Hub repo, made (or found) now on the main process: a bad token or name stops every process
    before training, not after it."""
    pusher, failed = None, [None]
    if accelerator.is_main_process:
        try:
            pusher = HubPusher(out, cfg.hub_model_id, cfg.hub_token, cfg.hub_private_repo)
        except HubPushError as err:
            failed = [str(err)]
    broadcast_object_list(failed)
    if failed[0] is not None:
        raise HubPushError(failed[0])
    return pusher


def _validator(accelerator, cfg: TrainConfig, tokenizer, max_length: int):
    """The held-out samples (the first ``--max_validation_samples``, read once, on every process: they are
    few) and the metrics over them."""
    from .validation import Validator

    with accelerator.main_process_first():
        dataset = build_dataset(cfg.validation_data_config(), part="validation" if cfg.validation_split else "train")
    samples = [dataset[i] for i in range(min(len(dataset), cfg.max_validation_samples))]
    logger.info("validation: %d held-out samples, every %d optimizer steps and at the end", len(samples),
                cfg.validation_every)
    return Validator(cfg, samples, tokenizer, max_length)


def _measure_pretrained_statistics(accelerator, vae, loader, seed: int) -> None:
    """A pretrained VAE's ``shift_factor`` / ``scaling_factor`` from 8 training batches (the same on every
    process and on every start: a seeded generator on a fresh pass over the loader)."""
    shift, scale = measure_latent_statistics(vae, itertools.islice(loader, 8), torch.Generator().manual_seed(seed),
                                             accelerator)
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    logger.info("latent statistics of the pretrained VAE: shift_factor %.4f, scaling_factor %.4f", shift, scale)


def _latent_cache(accelerator, cfg: TrainConfig, models: Components, tokenizer, max_length: int, dataset):
    """``--cache_latents``: the data set as cached moments (and text outputs, when the text encoder is frozen)."""
    vae = models.vae.to(accelerator.device)
    text_encoder = None if cfg.train_text_encoder else models.text_encoder.to(accelerator.device)
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    return build_or_open(accelerator, root, dataset, vae, text_encoder, tokenizer, max_length)


def _check_launch(accelerator, cfg: TrainConfig) -> None:
    """Setups that would run but not as asked: refused, or said once."""
    kind = accelerator.distributed_type.name
    if kind in ("FSDP", "DEEPSPEED") and cfg.trains_vae:
        raise ConfigError(f"{kind} runs only the flow stage (--train_diff_full / --train_diff); train the VAE and "
                          "GAN with DDP: accelerate_configs/multi_gpu.yaml")
    if kind == "FSDP" and cfg.use_ema:
        raise ConfigError("--use_ema is not supported with FSDP (the average would be sharded too); use "
                          "accelerate_configs/deepspeed_zero2.yaml or multi_gpu.yaml for an EMA run")
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched != accelerator.num_processes:
        raise ConfigError(f"the launcher started {launched} processes (WORLD_SIZE={launched}) but Accelerate runs "
                          f"{accelerator.num_processes}: each process would train its own copy into the same "
                          "--output_path. On a CPU set ACCELERATE_USE_CPU=1 (or use `accelerate launch --cpu "
                          f"--num_processes {launched}`); on GPUs check that each process sees its device")
    if cfg.precision == "fp16" and accelerator.device.type == "cpu":
        logger.warning("--mixed_precision fp16 / --use_fp16 has no effect on a CPU (Accelerate has no CPU fp16): "
                       "this run is fp32")


def _optimizers(accelerator, cfg: TrainConfig, optim_config, models: Components, total_steps: int,
                lr_file: Path) -> OptimSchedSet:
    """One optimizer and scheduler per trained component; ``--preserve_lr`` (the LRs in ``lr_file``) and
    ``--scale_lr`` set where each schedule starts. Config entries that this run does not use are named in the log."""
    initial_lrs = None
    if cfg.preserve_lr:
        if lr_file.exists():
            initial_lrs = load_lrs(lr_file)
        else:
            logger.warning("--preserve_lr: no %s to start from; the learning rates come from the config (--lr %g)",
                           Path(cfg.output_path) / LR_FILE, cfg.lr)
        if not cfg.model_checkpoint:
            logger.warning("--preserve_lr without --model_checkpoint: the learning rates continue, the weights start "
                           "new; give --model_checkpoint to continue from a run's weights")
    effective_batch = cfg.batch_size * accelerator.num_processes * cfg.training_steps
    logger.info("effective batch %d = %d per process x %d processes x %d accumulation; %d optimizer steps",
                effective_batch, cfg.batch_size, accelerator.num_processes, cfg.training_steps, total_steps)
    optim = build_optimizers_and_schedulers(
        optim_config or OptimSchedConfig(), models.trained(), total_steps, lr=cfg.lr, initial_lrs=initial_lrs,
        lr_multiplier=effective_batch if cfg.scale_lr and initial_lrs is None else 1)
    for name, why in optim.skipped.items():
        logger.warning("optimizers/schedulers: %s gets no optimizer (%s); its entry is not used", name, why)
    return optim


def _shared_seed(accelerator, seed: int | None) -> int:
    """``--seed``, or one drawn on the main process and shared, so every process agrees."""
    if seed is not None:
        return seed
    drawn = [int(torch.randint(0, 2**31 - 1, ()).item())]
    broadcast_object_list(drawn)
    logger.info("--seed not given; using %d", drawn[0])
    return drawn[0]


def _run_length(cfg: TrainConfig, loader) -> int:
    """Optimizer steps of the run; a streamed set is sized by ``--max_train_steps``."""
    if is_streaming(loader.dataset):
        return cfg.max_train_steps
    return cfg.max_train_steps or cfg.n_epochs * math.ceil(len(loader) / cfg.training_steps)


def _record_config(accelerator, cfg: TrainConfig, optim_config: OptimSchedConfig | None, out: Path) -> None:
    """``logs/train_config.json`` (every option, and the optimizer/scheduler entries as given) and the trackers
    get the run's config, secrets masked."""
    public = cfg.public_dict()
    if accelerator.is_main_process:
        written = {**public, "optimizer_scheduler_config": (optim_config or OptimSchedConfig()).to_dict()}
        write_text_atomically(out / "logs" / "train_config.json", json.dumps(written, indent=2) + "\n")
    if cfg.trackers:  # trackers take scalars only
        run_name = cfg.tracker_run_name or out.resolve().name
        accelerator.init_trackers(cfg.tracker_project_name,
                                  config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                          for k, v in public.items()},
                                  init_kwargs={"wandb": {"name": run_name}})
