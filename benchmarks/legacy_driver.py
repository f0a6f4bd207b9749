"""Driver for the EARLIER FluxFlow release (PyPI ``fluxflow`` 0.5.0 by default), run by benchmarks/peers.py
with ``benchmarks/.venv-legacy/bin/python`` (built by benchmarks/setup_legacy.sh). Prints one JSON line
starting with ``PEERS_JSON``.

    python benchmarks/legacy_driver.py --check
    python benchmarks/legacy_driver.py --match '{"kind": "vae", "target_params": 14400000, "downscales": 3}'
    python benchmarks/legacy_driver.py --run '{"kind": "vae", "config": {...}, "img_size": 64, ...}'

How the release is loaded: only its model modules (``fluxflow/models/vae.py``, ``flow.py`` and what they
import: ``activations``, ``conditioning``, ``bezier_jit*``, ``bezier_power_cache``; third-party imports: torch
and einops). The package ``__init__`` files, which import pydantic, yaml, diffusers and transformers for
config classes and the diffusers pipeline, are not executed: the two package entries are registered in
``sys.modules`` as bare packages pointing at the installed folders. No model module imports torchvision
(only ``fluxflow.utils.visualization`` does, which is never loaded), so no torchvision stub is needed.

Activation checkpointing: the release checkpoints its compressor/expander (flag, on in its trainer) and
ALWAYS its flow-transformer stack. ``"checkpointing": false`` (peers.py's default) turns both off, the
flow one by replacing the module-level ``checkpoint`` function of ``fluxflow.models.flow`` with a direct
call (same maths, no recomputation), so every model in the comparison does one forward and one backward.

``"contiguous": true`` (peers.py ``--legacy_contiguous``) makes the inputs of the expander's ConvTranspose2d
layers contiguous. As released they are channels_last-strided views (the expander's ``rearrange`` of its
tokens), and on CPU torch's ConvTranspose2d backward takes a very slow path for some of those shapes
(measured: 28 s instead of 0.5 s for a [1, 64, 32, 32] input, 16x16 kernel, 320 output channels).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from peers_common import (  # noqa: E402
    best_match,
    build_params,
    count_params,
    flow_batch,
    time_training_step,
    vae_loss,
)

_RELEASE = None


def load_release():
    """``(vae_module, flow_module, version)`` of the installed ``fluxflow`` without its package __init__s."""
    global _RELEASE
    if _RELEASE is not None:
        return _RELEASE
    spec = importlib.util.find_spec("fluxflow")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the earlier release (PyPI package 'fluxflow') is not installed here")
    root = next(iter(spec.submodule_search_locations))
    for name, path in (("fluxflow", root), ("fluxflow.models", os.path.join(root, "models"))):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            pkg.__package__ = name
            pkg.__file__ = os.path.join(path, "__init__.py")
            sys.modules[name] = pkg
    vae = importlib.import_module("fluxflow.models.vae")
    flow = importlib.import_module("fluxflow.models.flow")
    from importlib.metadata import version
    _RELEASE = (vae, flow, version("fluxflow"))
    return _RELEASE


def build(kind: str, cfg: dict, checkpointing: bool = False):
    vae_mod, flow_mod, _ = load_release()
    if kind == "vae":
        d, k = cfg["d_model"], cfg["downscales"]

        class LegacyVAE(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.compressor = vae_mod.FluxCompressor(in_channels=3, d_model=d, downscales=k,
                                                         use_gradient_checkpointing=checkpointing)
                self.expander = vae_mod.FluxExpander(d_model=d, upscales=k,
                                                     use_gradient_checkpointing=checkpointing)

        return LegacyVAE()
    if kind == "flow":
        if not checkpointing:
            flow_mod.checkpoint = lambda fn, *args, **kwargs: fn(*args)
        return flow_mod.FluxFlowProcessor(d_model=cfg["d_model"], vae_dim=cfg["vae_dim"],
                                          embedding_size=cfg["embedding_size"], n_head=cfg["n_head"],
                                          n_layers=cfg["n_layers"])
    raise ValueError(f"unknown kind {kind!r}")


def match(req: dict) -> dict:
    """The width (``d_model``) whose parameter count is nearest to ``target_params``, other sizes fixed."""
    kind, target = req["kind"], req["target_params"]
    if kind == "vae":
        cands = [dict(d_model=d, downscales=req["downscales"]) for d in range(8, 1025, 8)]
    else:
        fixed = {k: req[k] for k in ("vae_dim", "embedding_size", "n_head", "n_layers")}
        step = 2 * fixed["n_head"]
        cands = [dict(d_model=d, **fixed) for d in range(step, 4097, step)]
    cfg, n = best_match(cands, target, lambda c: build_params(lambda: build(kind, c, checkpointing=True)))
    return {"config": cfg, "params": n}


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/p)(W/p), C p p]`` tokens in raster order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def run(req: dict) -> dict:
    if req.get("threads"):
        torch.set_num_threads(req["threads"])
    torch.manual_seed(req.get("seed", 0))
    device = torch.device(req["device"])
    kind, cfg, b = req["kind"], req["config"], req["batch"]
    model = build(kind, cfg, checkpointing=req.get("checkpointing", False)).to(device)
    if req.get("contiguous"):
        # The expander unpacks its tokens with a permuting rearrange, so its ConvTranspose2d layers get
        # channels_last-strided inputs; on CPU torch's backward of that case can be tens of times slower.
        for mod in model.modules():
            if isinstance(mod, torch.nn.ConvTranspose2d):
                mod.register_forward_pre_hook(lambda _mod, inputs: tuple(i.contiguous() for i in inputs))
    gen = torch.Generator(device=device).manual_seed(req.get("seed", 0))
    if kind == "vae":
        x = torch.rand(b, 3, req["img_size"], req["img_size"], generator=gen, device=device) * 2 - 1

        def loss_fn(m):
            packed, mu, logvar = m.compressor(x, training=True)  # reparameterized inside
            return vae_loss(m.expander(packed, use_context=True), x, mu, logvar)
    else:
        lat = req["latent"]  # {"channels", "size", "patch"}: the same latent as ours, cut into patch tokens
        p, size = lat["patch"], lat["size"]
        x0 = torch.randn(b, lat["channels"], size, size, generator=gen, device=device)
        text = torch.randn(b, cfg["embedding_size"], generator=gen, device=device)  # one pooled vector
        grid = size // p
        hw = torch.zeros(b, 1, cfg["vae_dim"], device=device)
        hw[:, 0, 0] = grid / 1024.0  # the release's HW token: token-grid height and width / max_hw
        hw[:, 0, 1] = grid / 1024.0

        def loss_fn(m):
            x_t, s, v = flow_batch(x0, gen)
            packed = torch.cat([patchify(x_t, p), hw.to(x_t.dtype)], dim=1)
            out = m(packed, text, s)[:, :-1]  # the release takes timesteps in [0, 1]
            return torch.nn.functional.mse_loss(out.float(), patchify(v, p).float())

    res = time_training_step(model, loss_fn, device, req["dtype"], req["steps"], req["warmup"])
    res["params"] = count_params(model)
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="import the release and print its version")
    group.add_argument("--match", help="JSON request: find the width matching a parameter count")
    group.add_argument("--run", help="JSON request: time training steps of one model")
    args = parser.parse_args(argv)
    if args.check:
        vae_mod, _, ver = load_release()
        out = {"ok": True, "version": ver, "path": os.path.dirname(os.path.dirname(vae_mod.__file__)),
               "torch": torch.__version__}
    elif args.match:
        out = match(json.loads(args.match))
    else:
        out = run(json.loads(args.run))
    print("PEERS_JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
