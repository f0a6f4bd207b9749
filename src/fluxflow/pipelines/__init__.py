"""Diffusers pipelines (FluxFlowPipeline arrives with its issue)."""
