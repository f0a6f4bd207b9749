"""Where a run stands, saved with every checkpoint so a resumed run continues exactly."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch


class TrainProgress:
    """Optimizer steps done, the epoch and the micro-batches read in it, skipped-step counters, the metrics
    window not yet logged, the VAE's measured latent statistics, the early-stop record, and the training noise
    generator.

    The noise (VAE sampling, caption dropout, flow noise and noise levels) is reseeded at the start of every
    optimizer step from ``(seed, process index, step)``: a run resumed at step N draws exactly the noise an
    uninterrupted run draws, on any number of processes, without saving per-process generator states.
    """

    def __init__(self, seed: int, process_index: int = 0, device: torch.device | str = "cpu"):
        self.seed, self.process_index = seed, process_index
        self.global_step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.skipped_steps = 0       # optimizer steps skipped for a non-finite loss or gradient, in all
        self.nonfinite_in_a_row = 0
        self.window: defaultdict[str, float] = defaultdict(float)  # sums since the last log line
        self.latent_statistics: dict | None = None  # {"step", "shift", "scale"} measured at the end of a VAE run
        self.early_stop: dict = {"best": None, "best_step": None, "bad": 0, "ended": None}  # see early_stop.py
        self.noise = torch.Generator(device=device)
        self.start_step()

    def start_step(self) -> None:
        """Reseed the noise for optimizer step ``global_step + 1``."""
        words = np.random.SeedSequence([self.seed, self.process_index, self.global_step]).generate_state(2)
        self.noise.manual_seed(int(words[0]) << 31 ^ int(words[1]))

    def state_dict(self) -> dict:
        return {"global_step": self.global_step, "epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch,
                "skipped_steps": self.skipped_steps, "nonfinite_in_a_row": self.nonfinite_in_a_row,
                "window": dict(self.window), "latent_statistics": self.latent_statistics,
                "early_stop": dict(self.early_stop)}

    def load_state_dict(self, state: dict) -> None:
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.window = defaultdict(float, state.get("window", {}))
        self.latent_statistics = state.get("latent_statistics")
        self.early_stop = dict(state.get("early_stop", self.early_stop))
        self.start_step()
