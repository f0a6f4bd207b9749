"""Diffusers pipelines: :class:`FluxFlowPipeline` and the one-file checkpoint format."""

from .pipeline_fluxflow import FluxFlowPipeline, FluxFlowPipelineOutput
from .prompts import PromptEmbeddings, tokenize_prompts
from .single_file import load_single_file, save_single_file

__all__ = ["FluxFlowPipeline", "FluxFlowPipelineOutput", "PromptEmbeddings", "tokenize_prompts",
           "load_single_file", "save_single_file"]
