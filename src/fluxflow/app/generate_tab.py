"""The Generate tab: model, prompt and sampling settings in; images, the settings that make them again, and a
progress bar while sampling out. Every refusal or failure is a readable message (``gr.Error`` or the model
status line), never a traceback, and the app keeps serving."""

from __future__ import annotations

import logging
from dataclasses import replace

import gradio as gr

from .config import AppConfig
from .limits import MAX_SEED, Request, RequestError, check_request
from .sampling import generate, with_seed

logger = logging.getLogger("fluxflow.app")
DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_IMAGES = 28, 5.0, 4


def build_generate_tab(demo: gr.Blocks, app: AppConfig) -> None:
    """Lay out the tab inside ``demo`` and wire its events (API names ``/load_model``, ``/generate``)."""
    limits = app.limits
    choices = _model_choices(app)
    with gr.Row():
        model = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model", scale=6,
                            allow_custom_value=True, elem_id="model",
                            info="a pipeline of --runs, the --model" +
                                 (", or a Hub repo id (org/name)" if app.access.allow_hub else ""))
        refresh = gr.Button("Refresh list", scale=1, size="sm", min_width=100)
    status = gr.Markdown(elem_id="model-status")
    with gr.Row():
        with gr.Column(scale=5):
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                                placeholder="a red circle in the top left on a white background")
            negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="(none: the empty prompt)")
            with gr.Row():
                steps = gr.Slider(1, limits.max_steps, value=min(DEFAULT_STEPS, limits.max_steps), step=1,
                                  label="Steps")
                guidance = gr.Slider(0.0, 20.0, value=DEFAULT_GUIDANCE, step=0.5, label="Guidance (CFG)")
            with gr.Row():  # 0 = the model's training size; the step becomes the model's multiple once loaded
                height = gr.Slider(0, limits.max_size, value=0, step=8, label="Height px (0: trained)")
                width = gr.Slider(0, limits.max_size, value=0, step=8, label="Width px (0: trained)")
            with gr.Row():
                num_images = gr.Slider(1, limits.max_images, value=min(DEFAULT_IMAGES, limits.max_images),
                                       step=1, label="Images")
                seed = gr.Number(0, label="Seed (image k: seed + k)", precision=0, minimum=0,
                                 maximum=MAX_SEED)
                random_seed = gr.Checkbox(False, label="Random seed")
            with gr.Accordion("LoRA", open=False):
                lora = gr.Dropdown(app.access.lora_choices(), value=None, allow_custom_value=True,
                                   label="LoRA weights (.safetensors)",
                                   info="inside --runs, --lora_dir or the --model folder; empty: none")
                lora_scale = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="LoRA scale")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Column(scale=6):
            gallery = gr.Gallery(label="Images", format="png", columns=2, height=480, interactive=False,
                                 elem_id="gallery", buttons=["download", "fullscreen"])
            record = gr.JSON(label="Settings (everything that makes these images again)", max_height=300)

    def on_refresh(current_lora):
        return gr.Dropdown(choices=_model_choices(app)), gr.Dropdown(choices=app.access.lora_choices(),
                                                                     value=current_lora)

    def on_model(name):
        """Load the chosen model (cached) and set the size sliders to its multiple and training size."""
        try:
            loaded = app.cache.get(app.access.check_model(name))
        except RequestError as err:
            return f"**Not loaded.** {err}", gr.skip(), gr.skip()
        size = gr.Slider(step=loaded.multiple, value=min(loaded.default_size, limits.max_size))
        return loaded.describe(), size, size

    def on_generate(name, prompt, negative, steps, guidance, height, width, seed, random_seed, num_images,
                    lora, lora_scale, progress=gr.Progress()):  # noqa: B008 (gradio's way to ask for a bar)
        """Check, load (cached), sample; the seed box shows the seed used (a random one included)."""
        try:
            request = with_seed(Request(
                prompt=prompt or "", negative_prompt=negative or None, steps=int(steps),
                guidance_scale=float(guidance), height=int(height or 0), width=int(width or 0),
                num_images=int(num_images), seed=int(seed or 0), random_seed=bool(random_seed),
                lora=app.access.check_lora(lora), lora_scale=float(lora_scale)))
            name = app.access.check_model(name)
            check_request(replace(request, height=1, width=1), limits, 1)  # all that needs no model, first
            progress(0, desc="loading the model")
            loaded = app.cache.get(name)
            request = replace(request, height=request.height or loaded.default_size,
                              width=request.width or loaded.default_size)
            check_request(request, limits, loaded.multiple)
            progress((0, request.steps), desc="sampling", unit="steps")
            images, settings = generate(loaded, request, lambda done, total: progress(
                (done, total), desc="sampling", unit="steps"))
        except RequestError as err:
            raise gr.Error(str(err), title="Refused", print_exception=False) from None
        except Exception as err:  # a failure inside the model: a message, and the app keeps serving
            logger.exception("generation failed")
            raise gr.Error(f"Generation failed: {type(err).__name__}: {err}", print_exception=False) from None
        captions = [f"seed {s}" for s in request.seeds]
        return list(zip(images, captions)), settings, request.seed, loaded.describe()

    refresh.click(on_refresh, lora, [model, lora], api_name="refresh_models")
    one_at_a_time = dict(concurrency_id="model", concurrency_limit=1)  # loading and sampling share one slot
    model.change(on_model, model, [status, height, width], api_name="load_model", **one_at_a_time)
    demo.load(on_model, model, [status, height, width], api_visibility="undocumented", **one_at_a_time)
    inputs = [model, prompt, negative, steps, guidance, height, width, seed, random_seed, num_images, lora,
              lora_scale]
    gr.on([button.click, prompt.submit], on_generate, inputs, [gallery, record, seed, status],
          api_name="generate", **one_at_a_time)


def _model_choices(app: AppConfig) -> list[tuple[str, str]]:
    return [(c.label, c.value) for c in app.access.model_choices()]
