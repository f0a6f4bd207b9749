"""The training loop: set up the run, step through batches, finish (or stop early with a checkpoint).

Stage 1 trains the VAE (reconstruction + KL, optionally GAN and SPADE), stage 2 the flow processor on the
VAE's latents; joint training does both in one step (two calls). One optimizer step is ``--training_steps``
micro-batches (Accelerate's gradient accumulation); every schedule, log, checkpoint and sample counts optimizer
steps (``global_step``).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..atomic import write_text_atomically
from .checkpoint import resolve_resume
from .config import TrainConfig
from .data.config import FOLDER_BUILDERS
from .errors import ConfigError
from .guards import NonFiniteError, agree, step_is_finite
from .latent_statistics import measure_latent_statistics
from .logs import readable_logs
from .optim import OptimSchedConfig, evaluation_mode
from .run import Run, setup_run
from .signals import StopSignal

logger = logging.getLogger("fluxflow.train")

RUN_END = "run_end.json"  # in logs/: written when a run has finished
# the loss a component's ReduceLROnPlateau steps on when its `monitor` is "loss" (the default)
OWN_LOSS = {"vae": "loss/vae", "vae_encoder": "loss/vae", "vae_decoder": "loss/vae",
            "discriminator": "loss/discriminator", "flow": "loss/flow", "text_encoder": "loss/flow"}


def train(cfg: TrainConfig, optim_config: OptimSchedConfig | None = None, stop: StopSignal | None = None,
          end_processes: bool = True) -> Path:
    """Run one training job (``cfg`` validated, as ``arguments.load_config`` returns it); returns the output
    folder. SIGTERM/SIGINT (``stop``, installed here unless the caller installed it earlier) finish what is in
    progress, save a checkpoint and return, at any point from the start-up to the last export.
    ``end_processes=False`` keeps the process group of a launcher for more runs (a pipeline's next stage)."""
    with nullcontext(stop) if stop is not None else StopSignal() as stop, \
            readable_logs(os.environ.get("RANK", "0") == "0", local_data=_local_data(cfg)):
        run = setup_run(cfg, optim_config)
        accelerator, progress, first_step = run.accelerator, run.progress, run.progress.global_step
        stopping = agree(accelerator, stop.received is not None)[0]
        if not run.resumed and not stopping:
            run.save_samples()
        batches = run.batches()
        bar = tqdm(total=run.total_steps, initial=progress.global_step, desc="training",
                   disable=not accelerator.is_local_main_process)
        last = time.perf_counter()
        while progress.global_step < run.total_steps and not stopping and progress.early_stop["ended"] is None:
            with accelerator.accumulate(*run.models.with_gradients().values()):
                logs = _micro_step(run, next(batches))
                synced = accelerator.sync_gradients
                if synced:  # one decision for all processes: skip the step? stop after it?
                    logs.update(_clip_gradients(run))
                    nonfinite, stopping = agree(accelerator, not step_is_finite(logs, grads=accelerator.scaler is None),
                                                stop.received is not None)
                    stepped = _optimizer_step(run.optim, logs, skip=nonfinite, resting=_resting(run))
            for key, value in logs.items():
                progress.window[key] += float(value)
            progress.window["micro_batches"] += 1
            if synced:
                _end_step(run, logs, nonfinite=nonfinite, stepped=stepped)
                progress.window["seconds"] += time.perf_counter() - last
                last = time.perf_counter()
                bar.update(1)
                bar.set_postfix(loss=f"{float(logs.get('loss/vae', logs.get('loss/flow', 0.0))):.4f}",
                                lr=f"{next(iter(run.optim.lrs().values())):.2e}")
                if progress.global_step % cfg.log_interval == 0 or progress.global_step == run.total_steps:
                    run.log()
                if not stopping:
                    _periodic_outputs(run)
        bar.close()
        if stopping:  # preempted or interrupted: save now, skip the end-of-run exports
            _stop(run, stop.name, saved=progress.global_step > first_step, end_processes=end_processes)
        else:
            _finish(run, stop, end_processes)
    return run.out


def _local_data(cfg: TrainConfig) -> bool:
    """Whether the data is read from this machine (no download bar wanted)."""
    return cfg.source != "datasets" or cfg.dataset_name in FOLDER_BUILDERS or Path(cfg.dataset_name).exists()


def _micro_step(run: Run, batch: dict) -> dict:
    """Forward, losses and backward of one micro-batch: the VAE's objective, then the flow's (joint training
    hands the VAE's latents on, detached)."""
    logs, z = {}, None
    if run.vae_objective is not None:
        logs, z = run.vae_objective.micro_step(run.accelerator, run.models, batch, run.progress)
    if run.flow_objective is not None:
        logs.update(run.flow_objective.micro_step(run.accelerator, run.models, batch, run.progress.noise, z))
    return logs


def _clip_gradients(run: Run) -> dict:
    """Each trained model's gradient norm, clipped to ``--max_grad_norm`` when it is > 0 (measured always: the
    non-finite check reads it)."""
    logs = {}
    for name, module in run.models.with_gradients().items():
        params = [p for p in module.parameters() if p.requires_grad]
        norm = run.accelerator.clip_grad_norm_(params, run.cfg.max_grad_norm or math.inf)
        if norm is not None:  # DeepSpeed clips inside its engine and returns None
            logs[f"grad_norm/{name}"] = norm
    return logs


def _resting(run: Run) -> frozenset[str]:
    """Components whose optimizers sit this step out (the discriminator before ``--disc_start``)."""
    objective = run.vae_objective
    return objective.resting(run.progress.global_step) if objective is not None else frozenset()


def _optimizer_step(optim, logs: dict, skip: bool, resting: frozenset[str] = frozenset()) -> bool:
    """Step every optimizer and its scheduler once, or, for a non-finite step, none of them (the gradients
    are dropped). A resting component (no gradients this step) keeps its weights: its optimizer does not step
    (no weight decay; fp16's grad scaler refuses an optimizer without gradients); its LR schedule still counts
    the step, except a ReduceLROnPlateau, which would see its loss logged as 0. Returns whether the weights
    changed (an fp16 overflow step is skipped by the grad scaler)."""
    for part in optim.values():
        if not skip and part.name not in resting:
            part.optimizer.step()
        part.optimizer.zero_grad(set_to_none=True)
    if skip:
        return False
    return all([part.step(_monitored(part, logs)) for part in optim.values()
                if not (part.name in resting and part.monitor is not None)])


def _monitored(part, logs: dict):
    """The value a ReduceLROnPlateau steps on: its ``monitor`` metric ("loss": the component's own loss)."""
    if part.monitor is None:
        return None
    key = OWN_LOSS[part.name] if part.monitor == "loss" else part.monitor
    if key not in logs:
        raise ConfigError(f"schedulers.{part.name}.monitor {part.monitor!r}: this run logs no such value at each "
                          f"step; it logs {', '.join(sorted(k for k in logs if not k.startswith('grad_norm/')))} "
                          "('loss' is the component's own loss)")
    return logs[key]


def _end_step(run: Run, logs: dict, nonfinite: bool, stepped: bool) -> None:
    """Count the optimizer step (or the skipped one), move the EMA, reseed the noise for the next step."""
    progress = run.progress
    progress.global_step += 1
    _count_nonfinite(run, nonfinite, logs)
    if run.models.ema is not None and stepped:
        run.models.ema.step(run.models.unwrapped("transformer").parameters())
    progress.start_step()


def _count_nonfinite(run: Run, nonfinite: bool, logs: dict) -> None:
    """Count a skipped step; ``--max_nonfinite_steps`` of them in a row end the run."""
    progress, limit = run.progress, run.cfg.max_nonfinite_steps
    if not nonfinite:
        progress.nonfinite_in_a_row = 0
        return
    progress.skipped_steps += 1
    progress.nonfinite_in_a_row += 1
    bad = sorted(k for k, v in logs.items() if k.startswith(("loss/", "grad_norm/")) and not math.isfinite(float(v)))
    logger.warning("step %d skipped: non-finite %s (%d in a row, %d in all)", progress.global_step,
                   ", ".join(bad) or "values on another process", progress.nonfinite_in_a_row, progress.skipped_steps)
    if progress.nonfinite_in_a_row >= limit:
        kept = resolve_resume(run.out, "latest")
        raise NonFiniteError(
            f"steps {progress.global_step - progress.nonfinite_in_a_row + 1}-{progress.global_step}: "
            f"{progress.nonfinite_in_a_row} optimizer steps in a row had a non-finite loss or gradient "
            f"(--max_nonfinite_steps {limit}); stopping. "
            + (f"The last checkpoint, {kept}, is kept" if kept else "No checkpoint was saved yet")
            + "; try a lower --lr, a --max_grad_norm, or fp32, then --resume_from_checkpoint latest")


def _periodic_outputs(run: Run) -> None:
    """Validation every ``--validation_interval`` steps, a checkpoint every ``--checkpoint_save_interval``,
    samples every ``--samples_per_checkpoint`` checkpoints; the last step's come from :func:`_finish`."""
    step, cfg = run.progress.global_step, run.cfg
    if step >= run.total_steps or run.progress.early_stop["ended"]:
        return
    if run.validator is not None and step % cfg.validation_every == 0:  # before the checkpoint: a run resumed
        run.validate()                                                     # from it has this row already
    if run.progress.early_stop["ended"]:  # the validation ended the run: _finish saves this step
        return
    if step % cfg.checkpoint_save_interval == 0:
        run.checkpoint()
    if step % (cfg.checkpoint_save_interval * cfg.samples_per_checkpoint) == 0:
        run.save_samples()
    if step % cfg.checkpoint_save_interval == 0 and cfg.hub_push_checkpoints:  # after the samples: their grid too
        run.push(final=False)


def _stop(run: Run, signal_name: str, saved: bool, end_processes: bool) -> None:
    """Stopped by a signal: a checkpoint of the steps done since the start (if any), and how to go on."""
    step = run.progress.global_step
    if saved:
        run.checkpoint()
    if run.pusher is not None:
        run.pusher.wait()  # a checkpoint push in flight finishes; the final push comes with the resumed run
    run.accelerator.wait_for_everyone()  # gloo: no process tears its group down while another still uses it
    _end_training(run.accelerator, end_processes)
    if saved or run.resumed:
        logger.warning("%s: stopped after step %d with a checkpoint; continue with the same command plus "
                       "--resume_from_checkpoint latest", signal_name, step)
    else:
        logger.warning("%s: stopped before the first step; nothing to save, run the same command to start", signal_name)


def _finish(run: Run, stop: StopSignal, end_processes: bool) -> None:
    """A sync check, latent statistics, validation, final checkpoint, last samples, exported models, the Hub
    push and ``logs/run_end.json``. A stop signal on the way ends it after the part in progress: the final
    checkpoint comes first, so nothing trained is lost (and the run is not recorded as finished)."""
    accelerator, cfg, step = run.accelerator, run.cfg, run.progress.global_step
    _check_parameters_in_sync(run)
    if cfg.train_vae or cfg.gan_training:
        with evaluation_mode(run.optim):  # of the weights exported (a schedule-free optimizer's average)
            _store_latent_statistics(run)
    if run.validator is not None and run.validated_at != step:
        run.validate()
    ended = run.progress.early_stop["ended"]
    if ended:
        logger.info("step %d: ending early: %s", step, ended)
    run.checkpoint()
    if agree(accelerator, stop.received is not None)[0]:  # one decision for all: exports gather under FSDP
        logger.warning("%s: stopped after the final checkpoint of step %d; the same command plus "
                       "--resume_from_checkpoint latest writes vae/, pipeline/ and the last samples", stop.name, step)
    else:
        run.save_samples()  # first: the model card shows the final samples' grid
        run.export()
        run.push(final=True)
        if accelerator.is_main_process:
            _record_end(run, ended or f"trained the planned {run.total_steps} optimizer steps")
    accelerator.wait_for_everyone()  # gloo: no process tears its group down while another still uses it
    _end_training(accelerator, end_processes)
    skips = getattr(run.dataset, "skips", None)
    if skips is not None and skips.total():
        logger.warning("data: %s", skips.summary())
    logger.info("training done at step %d; outputs in %s", step, run.out)


def _end_training(accelerator, end_processes: bool) -> None:
    """The trackers finish; the process group of a launcher ends too, unless more runs follow on it."""
    if end_processes:
        accelerator.end_training()
        return
    for tracker in accelerator.trackers:
        tracker.finish()


def _record_end(run: Run, reason: str) -> None:
    """``logs/run_end.json``: the step a finished run ended at and why (a pipeline stage's transition)."""
    record = {"step": run.progress.global_step, "reason": reason}
    write_text_atomically(run.out / "logs" / RUN_END, json.dumps(record, indent=1) + "\n")


@torch.no_grad()
def _check_parameters_in_sync(run: Run) -> None:
    """With several DDP processes every trained model must end identical everywhere (gradient sync covers each
    of them); per-parameter sums are compared across processes. Sharded setups (FSDP, DeepSpeed) are skipped."""
    accelerator = run.accelerator
    if accelerator.num_processes == 1 or accelerator.distributed_type.name in ("FSDP", "DEEPSPEED"):
        return
    for name, model in run.models.trained().items():
        sums = torch.stack([p.detach().double().sum() for p in model.parameters()])
        everyone = accelerator.gather(sums[None].to(accelerator.device))
        if not torch.equal(everyone, everyone[:1].expand_as(everyone)):
            raise RuntimeError(f"{name}: parameters differ between processes; gradient sync did not cover them")
    logger.info("parameters identical on all %d processes", accelerator.num_processes)


def _store_latent_statistics(run: Run, batches: int = 8) -> None:
    """The latents' mean and standard deviation on training batches, stored as the VAE's ``shift_factor`` and
    ``scaling_factor``. Measured once per final step and kept in the run's state: a run resumed after its
    final save exports the same values."""
    model, progress = run.models.unwrapped("vae"), run.progress
    saved = progress.latent_statistics
    if saved is None or saved["step"] != progress.global_step:
        shift, scale = measure_latent_statistics(model, itertools.islice(run.loader, batches), progress.noise,
                                                 run.accelerator)
        saved = progress.latent_statistics = {"step": progress.global_step, "shift": shift, "scale": scale}
    model.register_to_config(shift_factor=saved["shift"], scaling_factor=saved["scale"])
    logger.info("latent statistics: shift_factor %.4f, scaling_factor %.4f", saved["shift"], saved["scale"])
