"""What benchmarks/peers.py and benchmarks/legacy_driver.py share: the timed training-step loop, the losses,
the peak-memory reading and the parameter-matching search. Needs only torch (it runs in both venvs).

Peak memory of a step:
  - CPU (Linux): the process's peak resident set size over the warm-up and timed steps minus its resident
    size once the model, optimizer and inputs are built. The peak mark is reset right before the first step
    (``echo 5 > /proc/self/clear_refs`` resets ``VmHWM``), so a transient peak from imports or model
    construction (TorchScript compilation, weight init) cannot hide the step's own peak; it is read from
    ``VmHWM`` in ``/proc/self/status``. Where that reset is not possible (not Linux), the fallback is
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the steps minus its value after building, which is
    only meaningful in a fresh process that built nothing bigger before (peers.py runs every model in its
    own subprocess in any case). torch has no public, reliable peak counter for its CPU allocator, hence RSS.
    The number includes gradients, AdamW state (allocated at the first step), activations and allocator slack.
  - CUDA: ``torch.cuda.max_memory_allocated()`` minus ``memory_allocated()`` after building (tensors only).
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

KL_BETA = 1e-4  # KL weight of the VAE loss; it changes no cost, only the loss value


def dtype_of(name: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """L1 + MSE + KL_BETA * KL(N(mean, exp(logvar)) || N(0, I)) per element: the same for every VAE."""
    logvar = logvar.float().clamp(-30.0, 20.0)
    kl = 0.5 * (mean.float().pow(2) + logvar.exp() - 1.0 - logvar).mean()
    recon = recon.float()
    return F.l1_loss(recon, x) + F.mse_loss(recon, x) + KL_BETA * kl


def flow_batch(x0: torch.Tensor, generator: torch.Generator):
    """Rectified flow: ``s`` logit-normal, ``x_t = (1 - s) x0 + s noise``, target ``v = noise - x0``."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    s = torch.sigmoid(torch.randn(x0.shape[0], generator=generator, device=x0.device, dtype=x0.dtype))
    x_t = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * noise
    return x_t, s, noise - x0


def _maxrss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20  # macOS reports bytes


def _proc_status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


class CpuPeak:
    """Peak RSS increase of this process from ``start()`` to ``stop()`` (MiB); see the module docstring."""

    def start(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self.base, self.method = _proc_status_mib("VmRSS"), "peak RSS increase (VmHWM reset after build)"
        except (OSError, KeyError):
            self.base, self.method = _maxrss_mib(), "ru_maxrss increase"

    def stop(self) -> float:
        peak = _proc_status_mib("VmHWM") if self.method.startswith("peak RSS") else _maxrss_mib()
        return peak - self.base


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training_step(model: torch.nn.Module, loss_fn, device: torch.device, dtype: str, steps: int,
                       warmup: int, lr: float = 1e-4) -> dict:
    """Time ``steps`` full training steps (zero_grad, forward + loss under autocast for bf16/fp16, backward,
    AdamW step) after ``warmup`` untimed ones; ``loss_fn(model)`` runs the forward and returns the loss.

    fp32: everything in fp32. bf16/fp16: weights, grads and optimizer in fp32, forward in autocast."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    amp = dtype != "fp32"
    amp_dtype = dtype_of(dtype)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(model)
        loss.backward()
        opt.step()
        return float(loss.detach())

    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    else:
        cpu_peak = CpuPeak()
        cpu_peak.start()
    loss = float("nan")
    for _ in range(warmup):
        loss = step()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        _sync(device)
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak, method = torch.cuda.max_memory_allocated(device) / 2**20 - base, "cuda max_memory_allocated"
    else:
        peak, method = cpu_peak.stop(), cpu_peak.method
    return {"step_s": statistics.median(times), "times_s": times, "peak_mib": peak, "mem_method": method,
            "last_loss": loss, "threads": torch.get_num_threads()}


def best_match(candidates, target: int, count) -> tuple[object, int]:
    """The candidate whose ``count(candidate)`` (parameters; None when it cannot be built) is nearest to
    ``target`` on a log scale; earlier candidates win ties. ``candidates`` must grow in size: the scan stops
    at the first one over twice the target. Returns ``(candidate, params)``."""
    best, best_n, best_err = None, 0, math.inf
    for cand in candidates:
        n = count(cand)
        if not n:
            continue
        err = abs(math.log(n / target))
        if err < best_err - 1e-12:
            best, best_n, best_err = cand, n, err
        if n > 2 * target:
            break
    if best is None:
        raise RuntimeError("no candidate configuration could be built")
    return best, best_n


def build_params(build) -> int | None:
    """Parameters of ``build()``: constructed on the meta device (no memory, no init cost) where the model
    allows it, else on the CPU; None if it cannot be built (an invalid width combination)."""
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                return count_params(build())
        except Exception:  # noqa: BLE001 - try the next device; an invalid combination is no candidate
            continue
    return None
