"""The app's page (``gr.Blocks``: a Generate tab and a Runs tab) and its server, on 127.0.0.1 unless told.

The server hands out no file of ``--runs`` or of the models: images reach the page as copies that gradio
writes to its own cache, and ``allowed_paths`` is empty (``GRADIO_ALLOWED_PATHS`` is ignored)."""

from __future__ import annotations

import os

import gradio as gr

from .config import AppConfig
from .generate_tab import build_generate_tab
from .runs_tab import build_runs_tab

HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 to serve the network
UPLOAD_LIMIT = "1mb"  # the page takes no files; gradio's upload route stays open, so keep it small
QUEUE_SIZE = 16  # requests waiting at most; more are turned away by gradio's queue


def build_app(app: AppConfig) -> gr.Blocks:
    """The page, with its events queued (generation and model loading one at a time)."""
    with gr.Blocks(title="fluxflow", analytics_enabled=False) as demo:
        gr.Markdown("### fluxflow: generate images, watch training runs")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                build_generate_tab(demo, app)
            with gr.Tab("Runs", id="runs", elem_id="tab-runs"):
                build_runs_tab(demo, app)
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def launch(demo: gr.Blocks, host: str = HOST, port: int | None = None, block: bool = True) -> gr.Blocks:
    """Serve ``demo`` at ``host:port`` (a free port from 7860 when None); ``block=False`` returns at once."""
    os.environ.pop("GRADIO_ALLOWED_PATHS", None)  # serve nothing beyond gradio's own files and cache
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, inbrowser=False,
                share=False, show_error=False, allowed_paths=[], ssr_mode=False, mcp_server=False,
                enable_monitoring=False, run_history=False, footer_links=["api", "settings"],
                max_file_size=UPLOAD_LIMIT, quiet=not block)
    return demo
