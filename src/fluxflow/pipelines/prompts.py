"""Prompt tokenization shared by training and sampling, and the pipeline's bundle of text embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def tokenize_prompts(tokenizer, prompts: list[str], max_length: int):
    """Pad every prompt to ``max_length`` (truncating longer ones) with an attention mask.

    Training's collate function and the pipeline both call this, so both see identical token layouts."""
    return tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True,
                     return_attention_mask=True, return_tensors="pt")


@dataclass
class PromptEmbeddings:
    """Per-token embeddings ``[B, L, D]``, pooled vector ``[B, P]`` and padding mask ``[B, L]`` of a batch.

    An internal helper: ``FluxFlowPipeline.encode_prompt`` returns diffusers' tuple of tensors."""

    embeds: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor

    def repeat(self, n: int) -> PromptEmbeddings:
        """Each prompt ``n`` times in a row (``p0, p0, p1, p1`` for ``n = 2``), as diffusers pipelines do."""
        if n == 1:
            return self
        return PromptEmbeddings(*(t.repeat_interleave(n, dim=0) for t in (self.embeds, self.pooled, self.mask)))
