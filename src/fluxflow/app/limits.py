"""What one generation request may ask for: sizes, image counts and steps are capped so that no request can
hold the model (and the one generation slot) for long. The caps are flags of ``fluxflow-app``."""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_SIZE = 1024  # pixels, height and width each
MAX_IMAGES = 8  # images per request
MAX_STEPS = 200  # sampling steps per request
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000  # far beyond any text encoder's token limit: longer text is no prompt


class RequestError(ValueError):
    """A request the app refuses; its message is shown in the page as it is."""


@dataclass(frozen=True)
class Limits:
    max_size: int = MAX_SIZE
    max_images: int = MAX_IMAGES
    max_steps: int = MAX_STEPS


@dataclass(frozen=True)
class Request:
    """One generation: ``num_images`` images of ``prompt``, the k-th with seed ``seed + k`` (as
    ``fluxflow-generate`` seeds them)."""

    prompt: str
    negative_prompt: str | None
    steps: int
    guidance_scale: float
    height: int
    width: int
    num_images: int
    seed: int
    random_seed: bool = False
    lora: str | None = None
    lora_scale: float = 1.0

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.num_images)]


def check_request(request: Request, limits: Limits, multiple: int) -> None:
    """Refuse, with a message naming the value and the limit, what the model cannot take or the limits
    forbid."""
    if not request.prompt.strip():
        raise RequestError("Write a prompt first.")
    for name, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt or "")):
        if len(text) > MAX_PROMPT_CHARS:
            raise RequestError(f"The {name} has {len(text)} characters; at most {MAX_PROMPT_CHARS} are "
                               f"accepted.")
    if not 1 <= request.steps <= limits.max_steps:
        raise RequestError(f"Steps: {request.steps} refused; this app allows 1 to {limits.max_steps} steps.")
    if not 1 <= request.num_images <= limits.max_images:
        raise RequestError(f"Number of images: {request.num_images} refused; this app allows 1 to "
                           f"{limits.max_images} per request.")
    if not math.isfinite(request.guidance_scale) or request.guidance_scale < 0:
        raise RequestError(f"Guidance scale: {request.guidance_scale} refused; give a number >= 0.")
    if not 0 <= request.seed <= MAX_SEED - request.num_images:
        raise RequestError(f"Seed: {request.seed} refused; give a whole number from 0 to "
                           f"{MAX_SEED - request.num_images}.")
    for name, size in (("Height", request.height), ("Width", request.width)):
        if not 0 < size <= limits.max_size:
            raise RequestError(f"{name}: {size} px refused; this app allows up to {limits.max_size} px.")
        if size % multiple:
            lower = size - size % multiple
            hint = f"{lower} or {lower + multiple}" if lower else str(multiple)
            raise RequestError(f"{name}: {size} px refused; this model needs a multiple of {multiple} px "
                               f"(VAE factor x patch size), e.g. {hint}.")
