"""Where a run stands, saved with every checkpoint so a resumed run continues exactly."""

from __future__ import annotations

import torch


class TrainProgress:
    """Optimizer steps done, the epoch and the micro-batches read in it, and the training noise generator.

    Registered with ``accelerator.register_for_checkpointing``: ``state/checkpoint-*/`` restores it, so a
    resumed run skips exactly the batches already seen and draws exactly the noise it would have drawn.
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu"):
        self.global_step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.noise = torch.Generator(device=device).manual_seed(seed)

    def state_dict(self) -> dict:
        return {"global_step": self.global_step, "epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch,
                "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.noise.set_state(state["noise"])
