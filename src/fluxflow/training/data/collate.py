"""Batching with tokenization: the same token layout the pipeline feeds the text encoder at inference.

``tokenize_captions`` goes through the pipeline's ``tokenize_prompts`` (``padding="max_length"``,
truncation, the text encoder's ``config.max_length``, default 77), so training and sampling cannot drift
apart in padding or masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def tokenize_captions(tokenizer, captions: list[str],
                      max_length: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``[len(captions), max_length]`` int64."""
    if tokenizer.pad_token is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no pad token; set tokenizer.pad_token "
                         f"(e.g. to its eos token) before training")
    from fluxflow.pipelines.prompts import tokenize_prompts  # the pipeline's own call: one token layout

    enc = tokenize_prompts(tokenizer, list(captions), max_length)
    return enc["input_ids"].long(), enc["attention_mask"].long()


@dataclass
class CaptionCollator:
    """DataLoader ``collate_fn``: ``[(pixel_values, caption), ...]`` -> a dict batch.

    Keys: ``pixel_values`` ``[B, C, H, W]`` float in [-1, 1], ``input_ids`` and ``attention_mask``
    ``[B, max_length]``, ``captions`` (the strings, for logs and samples).
    """

    tokenizer: object
    max_length: int = 77

    def __post_init__(self) -> None:
        # Import the pipeline's tokenization here, in the main process, so that forked DataLoader workers
        # inherit it instead of each importing diffusers on its first batch of every epoch.
        import fluxflow.pipelines.prompts  # noqa: F401

    def __call__(self, samples: list[tuple[torch.Tensor, str]]) -> dict:
        images, captions = zip(*samples)
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) > 1:
            raise ValueError(f"a batch mixes image shapes {sorted(shapes)}; use the bucket batch sampler")
        input_ids, attention_mask = tokenize_captions(self.tokenizer, list(captions), self.max_length)
        pixel_values = torch.stack(images).to(memory_format=torch.contiguous_format).float()
        return {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask,
                "captions": list(captions)}
