"""The training loop: data -> models -> optimizers -> prepare -> loop (step, log, checkpoint, samples) -> save.

Stage 1 trains the VAE (reconstruction + KL, optionally GAN and SPADE), stage 2 the flow processor on the
VAE's latents; joint training does both in one step. One optimizer step is ``--training_steps``
micro-batches (Accelerate's gradient accumulation); every schedule, log, checkpoint and sample counts
optimizer steps (``global_step``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, broadcast_object_list, set_seed
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..atomic import write_text_atomically
from ..models import FluxFlowTransformer
from ..pipelines import tokenize_prompts
from .checkpoint import (check_free_space, load_state, remove_leftovers, resolve_resume, save_model_folder, save_state,
                         save_weights, set_aside_earlier_state)
from .components import Components, build_components
from .config import TrainConfig
from .data import CaptionCollator, build_dataset, is_streaming, make_dataloader, prepare_dataloader
from .errors import ConfigError
from .export import build_pipeline, ema_copy, ema_weights, export_pipeline, sampling_scheduler, save_flow_samples
from .flow_step import FlowObjective, TextEmbeddingCache, drop_captions
from .guards import NonFiniteError, StopSignal, agree, nonfinite_weight, step_is_finite
from .metrics import MetricsLog
from .optim import DEFAULT_LR, LR_FILE, build_optimizers_and_schedulers, load_lrs, load_optim_sched_config, save_lrs
from .progress import TrainProgress
from .samples import save_vae_samples
from .test_images import pick_test_images
from .tokenizer import load_tokenizer
from .vae_step import VAEForward, VAEObjective

logger = logging.getLogger("fluxflow.train")


@dataclass
class Prepared:
    """The modules as the loop calls them (wrapped by ``accelerator.prepare`` when they train)."""

    vae: torch.nn.Module | None = None            # VAEForward, when the VAE trains
    discriminator: torch.nn.Module | None = None
    transformer: torch.nn.Module | None = None
    text_encoder: torch.nn.Module | None = None
    ema: EMAModel | None = None
    text_cache: TextEmbeddingCache | None = None

    def trained(self) -> list:
        """What ``accelerator.accumulate`` must cover: every module that gets gradients."""
        models = [self.vae, self.discriminator, self.transformer]
        if self.text_encoder is not None and any(p.requires_grad for p in self.text_encoder.parameters()):
            models.append(self.text_encoder)
        return [m for m in models if m is not None]


def train(cfg: TrainConfig, optim_sections: dict | None = None) -> Path:
    """Run one training job as configured; returns the output folder."""
    cfg.validate()
    optim_config = _optim_config(cfg, optim_sections)
    out = Path(cfg.output_path)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.training_steps, mixed_precision=cfg.precision,
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False if cfg.streaming else None))
    if accelerator.distributed_type.name in ("FSDP", "DEEPSPEED") and cfg.trains_vae:
        raise ConfigError(f"{accelerator.distributed_type.name} runs only the flow stage (--train_diff_full / "
                          "--train_diff); train the VAE and GAN with DDP: accelerate_configs/multi_gpu.yaml")
    if accelerator.distributed_type.name == "FSDP" and cfg.use_ema:
        raise ConfigError("--use_ema is not supported with FSDP (the average would be sharded too); use "
                          "accelerate_configs/deepspeed_zero2.yaml or multi_gpu.yaml for an EMA run")
    cfg.seed = _shared_seed(accelerator, cfg.seed)
    set_seed(cfg.seed)
    resume = resolve_resume(out, cfg.resume_from_checkpoint)
    if accelerator.is_main_process:
        remove_leftovers(out)
        if resume is None:
            set_aside_earlier_state(out, continuing=bool(cfg.model_checkpoint or cfg.preserve_lr))

    # models and data
    components = build_components(cfg)
    tokenizer = load_tokenizer(cfg.tokenizer_name)
    max_length = components.text_encoder.config.max_length if components.text_encoder is not None else 77
    with accelerator.main_process_first():  # a `datasets` cache is written once, then read by the others
        dataset = build_dataset(cfg, process_index=accelerator.process_index,
                                num_processes=accelerator.num_processes)
    loader = make_dataloader(dataset, cfg.batch_size, cfg.workers, CaptionCollator(tokenizer, max_length),
                             seed=cfg.seed)
    order = getattr(loader, "generator", None)  # reseeded every epoch: the data order is a function of the epoch
    buckets = loader.batch_sampler if hasattr(loader.batch_sampler, "set_epoch") else None
    test_images = [] if cfg.no_samples or not cfg.trains_vae else pick_test_images(cfg, dataset)
    null_tokens = tokenize_prompts(tokenizer, [""], max_length)  # the pipeline's null condition

    # optimizers, schedulers, prepare, resume
    loader = prepare_dataloader(accelerator, loader)
    total_steps = _run_length(cfg, loader)
    initial_lrs = load_lrs(out / LR_FILE) if cfg.preserve_lr and (out / LR_FILE).exists() else None
    effective_batch = cfg.batch_size * accelerator.num_processes * cfg.training_steps
    logger.info("effective batch %d = %d per process x %d processes x %d accumulation; %d optimizer steps",
                effective_batch, cfg.batch_size, accelerator.num_processes, cfg.training_steps, total_steps)
    if cfg.scale_lr and initial_lrs is None:  # the schedule starts from lr x effective batch (diffusers' rule)
        initial_lrs = {name: optim_config.optimizer_config(name, cfg.lr or DEFAULT_LR)["lr"] * effective_batch
                       for name in components.trained()}
    optim = build_optimizers_and_schedulers(optim_config, components.trained(), total_steps,
                                            lr=cfg.lr or DEFAULT_LR, initial_lrs=initial_lrs)
    run = _prepare(accelerator, cfg, components)
    if cfg.cache_text_embeddings:
        run.text_cache = TextEmbeddingCache(run.text_encoder, tokenizer, max_length)
    for part in optim.values():
        part.optimizer = accelerator.prepare(part.optimizer)
    progress = TrainProgress(cfg.seed, accelerator.process_index, accelerator.device)
    run_state = {"progress": progress, "optim": optim, **({"ema": run.ema} if run.ema is not None else {})}
    if accelerator.is_main_process:
        check_free_space(out, components.saved())
    if resume is not None:
        load_state(accelerator, resume, run_state)
        logger.info("resumed from %s at step %d", resume, progress.global_step)

    # the loop
    _record_config(accelerator, cfg, out)
    objectives = (VAEObjective(cfg), FlowObjective(cfg))
    metrics = MetricsLog(accelerator, out / "logs", resumed_at=progress.global_step)
    sample_every = cfg.checkpoint_save_interval * cfg.samples_per_checkpoint
    if resume is None:
        _samples(accelerator, cfg, components, run, tokenizer, test_images, out, 0)
    bar = tqdm(total=total_steps, initial=progress.global_step, disable=not accelerator.is_local_main_process,
               desc="training")
    window, started = defaultdict(float), time.perf_counter()
    with StopSignal() as stop:  # SIGTERM/SIGINT: finish the step, save, exit 0
        while progress.global_step < total_steps:
            if order is not None:
                order.manual_seed(cfg.seed + progress.epoch)
            if buckets is not None:
                buckets.set_epoch(progress.epoch)
            epoch_batches = accelerator.skip_first_batches(loader, progress.batches_in_epoch) \
                if progress.batches_in_epoch else loader
            epoch_batches.set_epoch(progress.epoch)  # Accelerate passes it to the data set (crops, flips)
            for batch in epoch_batches:
                progress.batches_in_epoch += 1
                with accelerator.accumulate(*run.trained()):
                    logs = _micro_step(accelerator, cfg, objectives, components, run, batch, null_tokens, progress)
                    if accelerator.sync_gradients:  # one decision for all processes: skip the step? stop after it?
                        finite = step_is_finite(logs, grads=accelerator.scaler is None)
                        nonfinite, stopping = agree(accelerator, not finite, stop.received is not None)
                        stepped = _optimizer_step(optim, logs, skip=nonfinite)
                for key, value in logs.items():
                    window[key] += float(value)
                window["micro_batches"] += 1
                if not accelerator.sync_gradients:
                    continue
                progress.global_step += 1
                _count_nonfinite(progress, cfg, out, nonfinite, logs)
                if run.ema is not None and stepped:
                    run.ema.step(accelerator.unwrap_model(run.transformer).parameters())
                progress.start_step()
                bar.update(1)
                bar.set_postfix(loss=f"{float(logs.get('loss/vae', logs.get('loss/flow', 0.0))):.4f}",
                                lr=f"{next(iter(optim.lrs().values())):.2e}")
                step = progress.global_step
                if step % cfg.log_interval == 0 or step == total_steps or stopping:
                    _log(metrics, accelerator, cfg, optim, progress, window, time.perf_counter() - started)
                    window, started = defaultdict(float), time.perf_counter()
                if stopping:  # preempted or interrupted: save now, skip the end-of-run exports
                    _checkpoint(accelerator, cfg, components, run, optim, tokenizer, out, step, run_state)
                    accelerator.end_training()
                    logger.warning("%s: stopped after step %d with a checkpoint; continue with the same command "
                                   "plus --resume_from_checkpoint latest", stop.name, step)
                    return out
                if step % cfg.checkpoint_save_interval == 0 and step < total_steps:
                    _checkpoint(accelerator, cfg, components, run, optim, tokenizer, out, step, run_state)
                if step % sample_every == 0 and step < total_steps:
                    _samples(accelerator, cfg, components, run, tokenizer, test_images, out, step)
                if step >= total_steps:
                    break
            else:  # the epoch is over (a stream too: it starts again, reshuffled, until --max_train_steps)
                if progress.batches_in_epoch == 0:
                    raise ConfigError("the data set gave no batch: lower --batch_size or check the data")
                progress.epoch += 1
                progress.batches_in_epoch = 0
                continue
            break
    bar.close()

    # the end: a sync check, latent statistics, final checkpoint, exported models, last samples
    _check_parameters_in_sync(accelerator, components)
    if cfg.train_vae or cfg.gan_training:
        _store_latent_statistics(accelerator, components.vae, loader, progress)
    _checkpoint(accelerator, cfg, components, run, optim, tokenizer, out, progress.global_step, run_state)
    if accelerator.is_main_process:
        save_model_folder(accelerator.unwrap_model(components.vae), out / "vae")
    if components.transformer is not None:
        _export(accelerator, cfg, components, run, tokenizer, out, progress.global_step)
    _samples(accelerator, cfg, components, run, tokenizer, test_images, out, progress.global_step)
    accelerator.end_training()
    if getattr(dataset, "skips", None) is not None and dataset.skips.total():
        logger.warning("data: %s", dataset.skips.summary(len(dataset) if hasattr(dataset, "__len__") else None))
    logger.info("training done at step %d; outputs in %s", progress.global_step, out)
    return out


_MONITORED = {"vae": "loss/vae", "vae_encoder": "loss/vae", "vae_decoder": "loss/vae",
              "discriminator": "loss/discriminator", "flow": "loss/flow", "text_encoder": "loss/flow"}


def _prepare(accelerator, cfg: TrainConfig, components: Components) -> Prepared:
    """Wrap what trains with ``accelerator.prepare``; move frozen models to the device."""
    run = Prepared()
    if components.train_vae:
        run.vae = accelerator.prepare(VAEForward(components.vae))
    else:
        components.vae.to(accelerator.device)
    if components.discriminator is not None:
        run.discriminator = accelerator.prepare(components.discriminator)
    if components.transformer is not None:
        run.transformer = accelerator.prepare(components.transformer)
        if cfg.train_text_encoder:
            run.text_encoder = accelerator.prepare(components.text_encoder)
        else:
            run.text_encoder = components.text_encoder.to(accelerator.device)
        if cfg.use_ema:
            run.ema = EMAModel(components.transformer.parameters(), decay=cfg.ema_decay,
                               model_cls=FluxFlowTransformer, model_config=components.transformer.config)
            run.ema.to(accelerator.device)
    return run


def _micro_step(accelerator, cfg, objectives, components, run, batch, null_tokens, progress) -> dict:
    """Forward, losses and backward of one micro-batch; on sync steps also each model's gradient norm
    (clipped to ``--max_grad_norm`` when it is > 0; measured always, as the non-finite check reads it)."""
    vae_objective, flow_objective = objectives
    x, logs, z = batch["pixel_values"], {}, None
    if run.vae is not None:
        recon, mean, logvar, z = run.vae(x, use_context=cfg.train_spade, generator=progress.noise)
        disc = accelerator.unwrap_model(run.discriminator) if run.discriminator is not None else None
        g_loss, logs = vae_objective.generator_loss(x, recon, mean, logvar, progress.global_step, disc)
        accelerator.backward(g_loss)
        if run.discriminator is not None:
            d_loss, d_logs = vae_objective.discriminator_loss(run.discriminator, x, recon, mean)
            accelerator.backward(d_loss)
            logs.update(d_logs)
    if run.transformer is not None:
        latents = _flow_latents(components.vae, x, z, progress.noise)
        ids, mask, dropped = drop_captions(batch["input_ids"], batch["attention_mask"], null_tokens.input_ids,
                                           null_tokens.attention_mask, cfg.cfg_dropout_prob, progress.noise)
        if run.text_cache is not None:
            captions = ["" if d else c for c, d in zip(batch["captions"], dropped.tolist())]
            *text, mask = run.text_cache(captions, ids.device)
        else:
            with torch.set_grad_enabled(cfg.train_text_encoder):
                text = run.text_encoder(ids, mask, return_dict=False)
        f_loss, f_logs = flow_objective.loss(run.transformer, latents, (*text, mask), progress.noise)
        accelerator.backward(f_loss)
        logs.update(f_logs, **{"flow/caption_dropout": dropped.float().mean()})
    if accelerator.sync_gradients:
        named = {"vae": run.vae, "discriminator": run.discriminator, "flow": run.transformer,
                 "text_encoder": run.text_encoder if cfg.train_text_encoder else None}
        for name, module in named.items():
            if module is not None:
                params = [p for p in module.parameters() if p.requires_grad]
                norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm or math.inf)
                if norm is not None:  # DeepSpeed clips inside its engine and returns None
                    logs[f"grad_norm/{name}"] = norm
    return logs


def _optimizer_step(optim, logs: dict, skip: bool) -> bool:
    """Step every optimizer and its scheduler once, or, for a non-finite step, none of them (the gradients
    are dropped). Returns whether the weights changed (an fp16 overflow step is skipped by the grad scaler)."""
    for part in optim.values():
        if not skip:
            part.optimizer.step()
        part.optimizer.zero_grad(set_to_none=True)
    if skip:
        return False
    stepped = [part.step(logs.get(_MONITORED[name])) for name, part in optim.items()]
    return all(stepped)


def _count_nonfinite(progress, cfg, out, nonfinite: bool, logs: dict) -> None:
    """Count a skipped step; ``--max_nonfinite_steps`` of them in a row end the run."""
    if not nonfinite:
        progress.nonfinite_in_a_row = 0
        return
    progress.skipped_steps += 1
    progress.nonfinite_in_a_row += 1
    bad = sorted(k for k, v in logs.items() if k.startswith(("loss/", "grad_norm/")) and not math.isfinite(float(v)))
    logger.warning("step %d skipped: non-finite %s (%d in a row, %d in all)", progress.global_step,
                   ", ".join(bad) or "values on another process", progress.nonfinite_in_a_row, progress.skipped_steps)
    if progress.nonfinite_in_a_row >= cfg.max_nonfinite_steps:
        kept = resolve_resume(out, "latest")
        raise NonFiniteError(
            f"steps {progress.global_step - progress.nonfinite_in_a_row + 1}-{progress.global_step}: "
            f"{progress.nonfinite_in_a_row} optimizer steps in a row had a non-finite loss or gradient "
            f"(--max_nonfinite_steps {cfg.max_nonfinite_steps}); stopping. "
            + (f"The last checkpoint, {kept}, is kept" if kept else "No checkpoint was saved yet")
            + "; try a lower --lr, a --max_grad_norm, or fp32, then --resume_from_checkpoint latest")


def _flow_latents(vae, x, z, generator) -> torch.Tensor:
    """Normalized latents ``(z - shift) * scale`` for the flow loss. In joint training they come from the
    VAE being trained, detached: the flow loss never pushes the VAE towards easy-to-model latents."""
    with torch.no_grad():
        if z is None:
            z = vae.encode(x.to(vae.dtype)).latent_dist.sample(generator=generator)
        return ((z.detach() - vae.config.shift_factor) * vae.config.scaling_factor).to(x.dtype)


def _optim_config(cfg: TrainConfig, sections: dict | None):
    if cfg.optim_sched_config and sections:
        raise ConfigError("give the optimizer/scheduler config either with --optim_sched_config or in the "
                          "--config file, not both")
    return load_optim_sched_config(cfg.optim_sched_config or sections or None)


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


def _record_config(accelerator, cfg: TrainConfig, out: Path) -> None:
    """``logs/train_config.json`` and the trackers get the run's config, secrets masked."""
    public = cfg.public_dict()
    if accelerator.is_main_process:
        write_text_atomically(out / "logs" / "train_config.json", json.dumps(public, indent=2) + "\n")
    if cfg.report_to != "none":  # trackers take scalars only
        accelerator.init_trackers("fluxflow", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                      for k, v in public.items()})


def _log(metrics, accelerator, cfg, optim, progress, window, seconds) -> None:
    """Averages of the window, over its micro-batches and over all processes (every process calls this)."""
    n = max(window.pop("micro_batches"), 1)
    keys = sorted(window)
    means = torch.tensor([window[k] / n for k in keys], dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        means = accelerator.reduce(means, reduction="mean")
    values = dict(zip(keys, means.tolist()))
    values.update({f"lr/{name}": lr for name, lr in optim.lrs().items()})
    images = n * cfg.batch_size * accelerator.num_processes
    values.update({"epoch": progress.epoch, "skipped_steps": progress.skipped_steps,
                   "step_time": seconds * cfg.training_steps / n,
                   "samples_per_s": images / max(seconds, 1e-9),
                   "samples_per_s_per_process": images / accelerator.num_processes / max(seconds, 1e-9)})
    step = progress.global_step
    metrics.log(step, values)
    if accelerator.is_main_process:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k.startswith(("loss/", "lr/")))
        logger.info("step %d: %s, %.1f samples/s", step, shown, values["samples_per_s"])


def _checkpoint(accelerator, cfg, components, run, optim, tokenizer, out, step, run_state) -> None:
    models = {name: _whole(accelerator, m) for name, m in components.saved().items()}
    if run.ema is not None:
        models["transformer_ema"] = ema_copy(models["transformer"], run.ema)
    bad = nonfinite_weight(models) if accelerator.is_main_process else None
    if agree(accelerator, bad is not None)[0]:
        raise NonFiniteError(f"step {step}: {bad or 'a weight (see the main process)'} holds NaN/Inf values; not "
                             "saving a checkpoint (the last one on disk is kept). Lower --lr or --max_grad_norm and "
                             "resume with --resume_from_checkpoint latest")
    scheduler = sampling_scheduler(cfg.timestep_shift) if components.transformer is not None else None
    save_weights(accelerator, out, models, tokenizer=tokenizer, scheduler=scheduler, extra={"global_step": step})
    save_state(accelerator, out, step, run_state, cfg.checkpoints_total_limit)
    if accelerator.is_main_process:
        save_lrs(out / LR_FILE, optim)
        if cfg.plot_graphs and (out / "logs" / "metrics.jsonl").exists():
            from .graphs import plot_metrics

            plot_metrics(out / "logs" / "metrics.jsonl", out / "logs" / "graphs")


def _whole(accelerator, model):
    """``model`` unwrapped, with all its weights. Under FSDP its shards are gathered (a collective: every process
    calls this) into a plain copy on the main process, and the other processes get ``None``."""
    base = accelerator.unwrap_model(model)
    if accelerator.distributed_type.name != "FSDP" or not any(p.requires_grad for p in base.parameters()):
        return base
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    whole = type(base).from_config(base.config)
    whole.load_state_dict(state)
    return whole


def _pipeline(accelerator, cfg, components, run, tokenizer):
    """A pipeline of the models as they are now (every process calls this; ``None`` off the main process)."""
    transformer, text_encoder = _whole(accelerator, run.transformer), _whole(accelerator, run.text_encoder)
    if not accelerator.is_main_process:
        return None
    return build_pipeline(accelerator.unwrap_model(components.vae), transformer, text_encoder, tokenizer,
                          cfg.timestep_shift)


def _samples(accelerator, cfg, components, run, tokenizer, test_images, out, step) -> None:
    if cfg.no_samples:
        return
    pipe = _pipeline(accelerator, cfg, components, run, tokenizer) if run.transformer is not None else None
    if not accelerator.is_main_process:
        return
    if test_images:
        save_vae_samples(accelerator.unwrap_model(components.vae), test_images, out / "samples", step, seed=cfg.seed)
    if pipe is not None:
        with ema_weights(pipe.transformer, run.ema):
            save_flow_samples(pipe, cfg.sample_captions, cfg.sample_sizes or [cfg.img_size], out / "samples", step,
                              cfg.sample_steps, cfg.sample_guidance_scale, seed=cfg.seed)


def _export(accelerator, cfg, components, run, tokenizer, out, step) -> None:
    """``output_path/pipeline``: a complete diffusers folder with the EMA weights when EMA is on."""
    pipe = _pipeline(accelerator, cfg, components, run, tokenizer)
    if pipe is None:
        return
    card = {"name": out.name, "backbone": pipe.text_encoder.backbone.config.model_type, "steps": step,
            "data": cfg.dataset_name or cfg.data_path, "size": cfg.img_size,
            "caption": cfg.sample_captions[0], "shift": cfg.timestep_shift}
    with ema_weights(pipe.transformer, run.ema):
        export_pipeline(pipe, out / "pipeline", card)


@torch.no_grad()
def _check_parameters_in_sync(accelerator, components) -> None:
    """With several DDP processes every trained model must end identical everywhere (gradient sync covers each
    of them); per-parameter sums are compared across processes. Sharded setups (FSDP, DeepSpeed) are skipped."""
    if accelerator.num_processes == 1 or accelerator.distributed_type.name in ("FSDP", "DEEPSPEED"):
        return
    for name, model in components.trained().items():
        sums = torch.stack([p.detach().double().sum() for p in accelerator.unwrap_model(model).parameters()])
        everyone = accelerator.gather(sums[None].to(accelerator.device))
        if not torch.equal(everyone, everyone[:1].expand_as(everyone)):
            raise RuntimeError(f"{name}: parameters differ between processes; gradient sync did not cover them")
    logger.info("parameters identical on all %d processes", accelerator.num_processes)


@torch.no_grad()
def _store_latent_statistics(accelerator, vae, loader, progress, batches: int = 8) -> None:
    """Measure the latents' mean and standard deviation on training batches and store them as the VAE's
    ``shift_factor`` and ``scaling_factor`` (``(z - shift) * scale`` then has zero mean, unit variance)."""
    model = accelerator.unwrap_model(vae)
    was_training = model.training
    model.eval()
    latents = []
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        z = model.encode(batch["pixel_values"]).latent_dist.sample(generator=progress.noise)
        latents.append(accelerator.gather(z.float().contiguous()))
    model.train(was_training)
    if not latents:
        return
    z = torch.cat(latents)
    shift, std = z.mean().item(), z.std().item()
    model.register_to_config(shift_factor=shift, scaling_factor=1.0 / max(std, 1e-6))
    logger.info("latent statistics: shift_factor %.4f, scaling_factor %.4f", shift, 1.0 / max(std, 1e-6))
