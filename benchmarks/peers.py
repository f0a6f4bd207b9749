"""Training step of FluxFlow's models vs peers at matched parameter counts, measured in one run.

    python benchmarks/peers.py            # CPU default: 64-px images, batch 4, fp32 (about 2 minutes)
    python benchmarks/peers.py --quick    # tiny models, 32 px, batch 2 (under a minute)
    python benchmarks/peers.py --device cuda --dtype bf16 --img_size 256 --batch_size 16 \
        --vae_preset base --flow_preset base --steps 20 --warmup 5    # GPU sizes (not measured yet)

Full measurement runs are serialized with other benchmarks on the machine:
    flock /tmp/fluxflow-bench.lock env HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peers.py

What one "training step" is, for every model: zero_grad, forward, loss, backward, AdamW step (lr 1e-4) on
one fixed batch of B random inputs (fresh noise every step). fp32: everything fp32; bf16/fp16: fp32
weights and optimizer, forward under ``torch.autocast``. Each measured process uses ``--threads`` torch
threads (default 1). Time per step is the median of ``--steps`` timed steps after ``--warmup`` untimed
ones; samples/s = B / time per step.

(a) VAE: encode, reparameterize (z = mean + std * eps), decode; loss L1 + MSE + 1e-4 * KL, the same formula
    for all three (benchmarks/peers_common.py:vae_loss).
    - ours: ``FluxFlowVAE.from_preset(--vae_preset, block_out_channels=--vae_channels)``. The CPU default
      widens the ``small`` preset's first stages (64/128/256/256 instead of 32/64/128/256, 20.3 M
      parameters) because the earlier release cannot be built near 14.4 M (see below).
    - diffusers ``AutoencoderKL``: same number of stages (same latent size), same latent channels, its
      widths = ours scaled by a common factor (multiples of its GroupNorm groups) and 1 or 2 layers per
      block: the candidate nearest to our parameter count.
    - earlier release (PyPI ``fluxflow`` 0.5.0, ``FluxCompressor`` + ``FluxExpander``): its width ``d_model``
      (also its latent channel count; a multiple of 8, and of 32 above 32 because of its SPADE GroupNorm) is
      searched to match our parameter count, with as many stages as ours (same latent grid) when that
      matches within 10%, else with its default 4 stages (16x: a smaller latent grid, more channels).
(b) Flow transformer: rectified flow, ``x_t = (1 - s) x0 + s noise``, s logit-normal, loss MSE(v, noise - x0),
    on random latents of our VAE's shape (channels, img_size / f) with ``--text_tokens`` text tokens of our
    text width.
    - ours: ``FluxFlowTransformer.from_preset(--flow_preset)``; timestep s * 1000.
    - diffusers ``SD3Transformer2DModel`` (MMDiT): same patch size, latent, text tokens and widths in/out;
      head count/size and depth chosen for the parameter count (our width kept when it can match).
    - earlier release ``FluxFlowProcessor``: it has no patchify and takes ONE pooled text vector (its
      architecture has no text-token sequence), so it gets the same latent cut into the same patch tokens
      (``vae_dim`` = C * p * p, one token per patch, plus its HW token) and a pooled text vector of our text
      width; timestep s in [0, 1]; same heads and depth as ours, ``d_model`` searched for the parameter count.
      The release always checkpoints its transformer stack (and its trainer its VAE); by default that is
      turned off here so every model runs one forward and one backward (``--legacy_checkpointing``: as
      released). As released, the expander's transposed convolutions get channels_last-strided inputs, for
      which torch's CPU backward can be very slow at some sizes (96 px and up here: minutes per step);
      ``--legacy_contiguous`` makes those inputs contiguous (same maths) to separate that from the
      architecture's cost.

Peak memory of the step: each model runs in a fresh subprocess. On CPU the number is the increase of the
process's peak resident set size over the steps, relative to its resident size once the model, optimizer
and inputs exist: Linux's peak mark (VmHWM) is reset after building (``/proc/self/clear_refs``), so
import- or build-time peaks cannot hide the step's; elsewhere ``resource.getrusage(...).ru_maxrss`` after
minus before is used. It covers grads, AdamW state, activations and allocator slack; torch's CPU
allocator has no reliable public peak counter. On CUDA it is ``torch.cuda.max_memory_allocated`` minus the
memory allocated before the first step (benchmarks/peers_common.py).

The earlier release runs in its own venv (``benchmarks/.venv-legacy``, made by ``benchmarks/setup_legacy.sh``)
through ``benchmarks/legacy_driver.py``; when that venv is missing or the release does not import, its rows
are skipped and the reason is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from peers_common import (  # noqa: E402
    best_match,
    build_params,
    count_params,
    flow_batch,
    time_training_step,
    vae_loss,
)

HERE = Path(__file__).resolve().parent
LEGACY_PYTHON = HERE / ".venv-legacy" / "bin" / "python"
LEGACY_DRIVER = HERE / "legacy_driver.py"
TOLERANCE = 0.10  # parameter counts must match within 10%
JSON_TAG = "PEERS_JSON "

PEERS = {"vae": ("ours", "diffusers", "legacy"), "flow": ("ours", "diffusers", "legacy")}
NAMES = {
    ("vae", "ours"): "FluxFlowVAE (ours)",
    ("vae", "diffusers"): "diffusers AutoencoderKL",
    ("vae", "legacy"): "fluxflow {version} FluxCompressor+FluxExpander",
    ("flow", "ours"): "FluxFlowTransformer (ours)",
    ("flow", "diffusers"): "diffusers SD3Transformer2DModel",
    ("flow", "legacy"): "fluxflow {version} FluxFlowProcessor",
}


# ---------------------------------------------------------------------------------------------- models


def build_model(part: str, who: str, cfg: dict) -> torch.nn.Module:
    """Ours and diffusers' models (in this venv) from a JSON-able config."""
    if (part, who) == ("vae", "ours"):
        from fluxflow.models import FluxFlowVAE
        return FluxFlowVAE(**cfg)
    if (part, who) == ("flow", "ours"):
        from fluxflow.models import FluxFlowTransformer
        return FluxFlowTransformer(**cfg)
    if (part, who) == ("vae", "diffusers"):
        from diffusers import AutoencoderKL
        n = len(cfg["block_out_channels"])
        return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * n,
                             up_block_types=("UpDecoderBlock2D",) * n, **cfg)
    if (part, who) == ("flow", "diffusers"):
        from diffusers import SD3Transformer2DModel
        return SD3Transformer2DModel(**cfg)
    raise ValueError(f"no model for {part}/{who}")


def params_of(part: str, who: str, cfg: dict) -> int | None:
    return build_params(lambda: build_model(part, who, cfg))


def ours_configs(args) -> tuple[dict, dict]:
    from fluxflow.models.presets import preset_config
    vae = preset_config(args.vae_preset, "vae")
    if args.vae_channels:
        vae["block_out_channels"] = [int(c) for c in args.vae_channels.split(",")]
    vae = {k: list(v) if isinstance(v, tuple) else v for k, v in vae.items()}
    vae["sample_size"] = args.img_size
    flow = preset_config(args.flow_preset, "transformer")
    flow["sample_size"] = latent_size(args, vae)
    return vae, flow


def latent_size(args, vae_cfg: dict) -> int:
    return args.img_size // 2 ** (len(vae_cfg["block_out_channels"]) - 1)


def match_autoencoder_kl(vae_cfg: dict, target: int) -> tuple[dict, int]:
    """AutoencoderKL with our stage count and latent channels; widths = ours * k (multiples of its norm
    groups), 1 or 2 layers per block; the candidate nearest to ``target`` parameters. Its usual 32 norm groups
    (fewer for narrower models) unless no width on that grid comes within ``TOLERANCE``: then groups of 8 or 4,
    a finer grid of widths (small models, e.g. the tiny preset)."""
    groups = min(32, min(vae_cfg["block_out_channels"]))
    best = _match_autoencoder_kl(vae_cfg, target, groups)
    for finer in (8, 4):
        if abs(best[1] / target - 1) <= TOLERANCE or finer >= groups:
            continue
        best = min(best, _match_autoencoder_kl(vae_cfg, target, finer), key=lambda cn: abs(math.log(cn[1] / target)))
    return best


def _match_autoencoder_kl(vae_cfg: dict, target: int, groups: int) -> tuple[dict, int]:
    ours = vae_cfg["block_out_channels"]
    cands = []
    for layers in (2, 1):
        series = []
        for k in [i / 16 for i in range(4, 65)]:
            widths = [max(groups, round(c * k / groups) * groups) for c in ours]
            cfg = dict(in_channels=3, out_channels=3, block_out_channels=widths, layers_per_block=layers,
                       latent_channels=vae_cfg["latent_channels"], norm_num_groups=groups,
                       sample_size=vae_cfg["sample_size"])
            if cfg not in series:
                series.append(cfg)
        cands.append(best_match(series, target, lambda c: params_of("vae", "diffusers", c)))
    return min(cands, key=lambda cn: abs(math.log(cn[1] / target)))


def match_sd3(flow_cfg: dict, target: int) -> tuple[dict, int]:
    """SD3Transformer2DModel on our latent (patch size, channels, sample size) and text widths; our head size
    and head count with the depth searched first, other head counts only if that misses by > 10%."""
    heads = flow_cfg["num_attention_heads"]
    head_dim = flow_cfg["hidden_size"] // heads
    p, size = flow_cfg["patch_size"], flow_cfg["sample_size"]

    def cfg(h, layers):
        return dict(sample_size=size, patch_size=p, in_channels=flow_cfg["in_channels"], num_layers=layers,
                    attention_head_dim=head_dim, num_attention_heads=h,
                    joint_attention_dim=flow_cfg["text_embed_dim"], caption_projection_dim=h * head_dim,
                    pooled_projection_dim=flow_cfg["pooled_projection_dim"],
                    out_channels=flow_cfg["in_channels"], pos_embed_max_size=max(size // p, 1))

    depth = range(1, 4 * flow_cfg["num_layers"] + 1)

    def count(c):
        return params_of("flow", "diffusers", c)

    best = best_match([cfg(heads, n) for n in depth], target, count)
    if abs(best[1] / target - 1) > TOLERANCE:
        for h in range(1, 2 * heads + 1):
            other = best_match([cfg(h, n) for n in depth], target, count)
            if abs(math.log(other[1] / target)) < abs(math.log(best[1] / target)):
                best = other
    return best


# ------------------------------------------------------------------------------------------ measurement


def measure(spec: dict) -> dict:
    """Build one of ours/diffusers' models from ``spec`` and time its training step (this process)."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec.get("seed", 0))
    device = torch.device(spec["device"])
    part, who, cfg, b = spec["part"], spec["who"], spec["config"], spec["batch"]
    model = build_model(part, who, cfg).to(device)
    gen = torch.Generator(device=device).manual_seed(spec.get("seed", 0))
    if part == "vae":
        size = spec["img_size"]
        x = torch.rand(b, 3, size, size, generator=gen, device=device) * 2 - 1

        def loss_fn(m):
            posterior = m.encode(x).latent_dist
            z = posterior.sample(generator=gen)
            recon = m.decode(z).sample
            return vae_loss(recon, x, posterior.mean, posterior.logvar)
    else:
        lat = spec["latent"]
        x0 = torch.randn(b, lat["channels"], lat["size"], lat["size"], generator=gen, device=device)
        text = torch.randn(b, spec["text_tokens"], spec["text_dim"], generator=gen, device=device)
        pooled = torch.randn(b, spec["pooled_dim"], generator=gen, device=device)

        if who == "ours":
            def loss_fn(m):
                x_t, s, v = flow_batch(x0, gen)
                out = m(x_t, text, pooled, s * 1000, return_dict=False)[0]
                return torch.nn.functional.mse_loss(out.float(), v.float())
        else:
            def loss_fn(m):
                x_t, s, v = flow_batch(x0, gen)
                out = m(hidden_states=x_t, encoder_hidden_states=text, pooled_projections=pooled,
                        timestep=s * 1000, return_dict=False)[0]
                return torch.nn.functional.mse_loss(out.float(), v.float())

    res = time_training_step(model, loss_fn, device, spec["dtype"], spec["steps"], spec["warmup"])
    res["params"] = count_params(model)
    return res


def _parse_tagged(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(JSON_TAG):
            return json.loads(line[len(JSON_TAG):])
    raise RuntimeError("no result line")


def _run_child(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise RuntimeError(f"exit {proc.returncode}: {tail}")
    return _parse_tagged(proc.stdout)


def measure_isolated(spec: dict) -> dict:
    """``measure(spec)`` in a fresh Python process (so its peak RSS belongs to this model alone)."""
    return _run_child([sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)])


def legacy_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # never let the legacy venv see this repo's src/fluxflow
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def legacy_call(python: Path, flag: str, payload: dict | None = None) -> dict:
    cmd = [str(python), str(LEGACY_DRIVER), flag] + ([json.dumps(payload)] if payload is not None else [])
    return _run_child(cmd, env=legacy_env())


def legacy_status(python: Path) -> tuple[dict | None, str | None]:
    """``(check result, None)`` when the earlier release imports in its venv, else ``(None, why)``."""
    if not python.exists():
        return None, (f"no legacy venv ({python} missing): run `bash benchmarks/setup_legacy.sh` to install "
                      "the earlier release (PyPI fluxflow==0.5.0) in its own venv")
    try:
        return legacy_call(python, "--check"), None
    except Exception as err:  # noqa: BLE001 - reported in the table
        return None, f"the earlier release does not import in {python}: {err}"


# --------------------------------------------------------------------------------------------- planning


def plan(args, legacy_python: Path | None) -> tuple[list[dict], dict]:
    """The six (or four) measurement specs with matched configs, and notes (legacy status, warnings)."""
    vae_cfg, flow_cfg = ours_configs(args)
    lat = latent_size(args, vae_cfg)
    common = dict(batch=args.batch_size, steps=args.steps, warmup=args.warmup, device=args.device,
                  dtype=args.dtype, seed=args.seed, threads=args.threads)
    notes: dict = {"legacy": None, "legacy_version": None, "warnings": []}
    specs = []

    ours_vae_n = params_of("vae", "ours", vae_cfg)
    akl_cfg, _ = match_autoencoder_kl(vae_cfg, ours_vae_n)
    vae_common = dict(part="vae", img_size=args.img_size, **common)
    specs.append(dict(who="ours", config=vae_cfg, **vae_common))
    specs.append(dict(who="diffusers", config=akl_cfg, **vae_common))

    ours_flow_n = params_of("flow", "ours", flow_cfg)
    sd3_cfg, _ = match_sd3(flow_cfg, ours_flow_n)
    flow_common = dict(part="flow", latent=dict(channels=flow_cfg["in_channels"], size=lat,
                                                patch=flow_cfg["patch_size"]),
                       text_tokens=args.text_tokens, text_dim=flow_cfg["text_embed_dim"],
                       pooled_dim=flow_cfg["pooled_projection_dim"], **common)
    specs.append(dict(who="ours", config=flow_cfg, **flow_common))
    specs.append(dict(who="diffusers", config=sd3_cfg, **flow_common))

    if legacy_python is None:
        notes["legacy"] = "skipped (--no_legacy)"
        return specs, notes
    check, why = legacy_status(legacy_python)
    if check is None:
        notes["legacy"] = why
        return specs, notes
    notes["legacy_version"] = check["version"]
    try:
        stages = len(vae_cfg["block_out_channels"]) - 1

        def match_vae(downscales):
            req = {"kind": "vae", "target_params": ours_vae_n, "downscales": downscales}
            return legacy_call(legacy_python, "--match", req)

        same = best = match_vae(stages)
        if abs(same["params"] / ours_vae_n - 1) > TOLERANCE and stages != 4:
            default = match_vae(4)
            if abs(math.log(default["params"] / ours_vae_n)) < abs(math.log(same["params"] / ours_vae_n)):
                best = default
        specs.append(dict(who="legacy", config=best["config"], legacy=True, contiguous=args.legacy_contiguous,
                          checkpointing=args.legacy_checkpointing, **vae_common))
        p = flow_cfg["patch_size"]
        req = dict(kind="flow", target_params=ours_flow_n, vae_dim=flow_cfg["in_channels"] * p * p,
                   embedding_size=flow_cfg["pooled_projection_dim"], n_head=flow_cfg["num_attention_heads"],
                   n_layers=flow_cfg["num_layers"])
        fl = legacy_call(legacy_python, "--match", req)
        specs.append(dict(who="legacy", config=fl["config"], legacy=True,
                          checkpointing=args.legacy_checkpointing, **flow_common))
    except Exception as err:  # noqa: BLE001
        notes["legacy"] = f"the earlier release failed while matching sizes: {err}"
    return sorted(specs, key=lambda sp: (sp["part"] != "vae", PEERS[sp["part"]].index(sp["who"]))), notes


def _legacy_request(spec: dict) -> dict:
    req = dict(kind=spec["part"], config=spec["config"], batch=spec["batch"], steps=spec["steps"],
               warmup=spec["warmup"], device=spec["device"], dtype=spec["dtype"], seed=spec["seed"],
               threads=spec["threads"], checkpointing=spec["checkpointing"],
               contiguous=spec.get("contiguous", False))
    if spec["part"] == "vae":
        req["img_size"] = spec["img_size"]
    else:
        req["latent"] = spec["latent"]
    return req


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def compare(args, isolate: bool = True, legacy_python: Path | None = LEGACY_PYTHON, log=_stderr) -> dict:
    """Plan, measure every model, compute ratios ours/peer. ``isolate=False`` measures in this process
    (no peak memory: the RSS high-water mark would be shared) and is what the unit test runs."""
    specs, notes = plan(args, legacy_python)
    rows = []
    for spec in specs:
        label = NAMES[(spec["part"], spec["who"])].format(version=notes.get("legacy_version"))
        if spec.get("contiguous"):
            label += " (contiguous convT inputs)"
        if spec.get("checkpointing"):
            label += " (activation checkpointing)"
        log(f"measuring {label} ...")
        start = time.perf_counter()
        try:
            if spec.get("legacy"):
                res = legacy_call(legacy_python, "--run", _legacy_request(spec))
            elif isolate:
                res = measure_isolated(spec)
            else:
                res = measure(spec)
                res["peak_mib"], res["mem_method"] = None, "not isolated"
            err = None
        except Exception as exc:  # noqa: BLE001 - one failing model does not stop the others
            res, err = {}, str(exc)
        rows.append(dict(part=spec["part"], who=spec["who"], name=label, config=spec["config"],
                         params=res.get("params"), step_s=res.get("step_s"), times_s=res.get("times_s"),
                         peak_mib=res.get("peak_mib"), mem_method=res.get("mem_method"),
                         threads=res.get("threads"), error=err, wall_s=time.perf_counter() - start,
                         samples_per_s=(spec["batch"] / res["step_s"]) if res.get("step_s") else None))
    def ratio(ours, peer, key):
        a, b = (ours or {}).get(key), peer.get(key)
        return a / b if a is not None and b not in (None, 0) else None

    ratios = []
    for part in ("vae", "flow"):
        ours = next((r for r in rows if r["part"] == part and r["who"] == "ours"), None)
        for peer in (r for r in rows if r["part"] == part and r["who"] != "ours"):
            keys = ("params", "step_s", "samples_per_s", "peak_mib")
            ratios.append({"part": part, "peer": peer["name"], **{k: ratio(ours, peer, k) for k in keys}})
            if ratios[-1]["params"] is not None and abs(ratios[-1]["params"] - 1) > TOLERANCE:
                notes["warnings"].append(f"{peer['name']}: parameter count not within 10% of ours "
                                         f"(ours/peer {ratios[-1]['params']:.2f}); nearest buildable size")
    return dict(rows=rows, ratios=ratios, notes=notes, settings=settings(args))


def settings(args) -> dict:
    import diffusers
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    keys = ("img_size", "batch_size", "steps", "warmup", "device", "dtype", "threads", "text_tokens",
            "vae_preset", "vae_channels", "flow_preset", "legacy_checkpointing", "legacy_contiguous")
    return {**{k: getattr(args, k) for k in keys}, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "cpu": cpu,
            "python": platform.python_version()}


# ---------------------------------------------------------------------------------------------- report


def _f(v, fmt, suffix=""):
    return "n/a" if v is None else format(v, fmt) + suffix


def _short(cfg: dict, part: str, who: str) -> str:
    keys = {
        ("vae", "ours"): ("block_out_channels", "layers_per_block", "latent_channels"),
        ("vae", "diffusers"): ("block_out_channels", "layers_per_block", "latent_channels"),
        ("vae", "legacy"): ("d_model", "downscales"),
        ("flow", "ours"): ("hidden_size", "num_layers", "num_attention_heads", "patch_size"),
        ("flow", "diffusers"): ("num_attention_heads", "attention_head_dim", "num_layers", "patch_size"),
        ("flow", "legacy"): ("d_model", "n_layers", "n_head", "vae_dim"),
    }[(part, who)]
    return ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg).replace(" ", "").replace(",", ", ")


def report(result: dict) -> str:
    s, notes = result["settings"], result["notes"]
    threads = ", ".join(sorted({str(r["threads"]) for r in result["rows"] if r["threads"]})) or "n/a"
    out = [f"{s['img_size']}x{s['img_size']} images, batch {s['batch_size']}, {s['dtype']}, {s['device']}, "
           f"median of {s['steps']} steps after {s['warmup']} warm-up; {s['text_tokens']} text tokens; "
           f"torch {s['torch']}, diffusers {s['diffusers']}, {threads} torch threads per model, {s['cpu']}",
           ""]
    out.append("| part | model | config | params (M) | s/step | samples/s | peak MiB |")
    out.append("|---|---|---|---:|---:|---:|---:|")
    for r in result["rows"]:
        params = None if r["params"] is None else r["params"] / 1e6
        cells = [r["part"], r["name"], _short(r["config"], r["part"], r["who"]), _f(params, ".2f"),
                 _f(r["step_s"], ".3f"), _f(r["samples_per_s"], ".2f"), _f(r["peak_mib"], ".0f")]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "| part | ours / peer | params | time per step | samples/s | peak memory |",
            "|---|---|---:|---:|---:|---:|"]
    for q in result["ratios"]:
        cells = [q["part"], f"ours / {q['peer']}"] + [
            _f(q[k], ".2f", "x") for k in ("params", "step_s", "samples_per_s", "peak_mib")]
        out.append("| " + " | ".join(cells) + " |")
    methods = sorted({r["mem_method"] for r in result["rows"] if r["mem_method"]})
    out += ["", ("ratios are ours / peer: time per step and peak memory below 1x, samples/s above 1x, "
                 "favour ours"), f"peak memory: {', '.join(methods) or 'n/a'}"]
    if notes["legacy"]:
        out.append(f"earlier release: NOT MEASURED: {notes['legacy']}")
    for r in result["rows"]:
        if r["error"]:
            out.append(f"FAILED {r['name']}: {r['error']}")
    for w in notes["warnings"]:
        out.append(f"warning: {w}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img_size", type=int, default=None,
                        help="image side in pixels (default 64; quick 32)")
    parser.add_argument("--batch_size", type=int, default=None, help="batch B (default 4; quick 2)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps, median reported (default 5; quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per measured process (default 1: with 2 threads on this "
                             "2-core VM, any other busy process made steps several times slower; 0 = "
                             "torch's default)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="fp32, or autocast mixed precision with fp32 weights")
    parser.add_argument("--text_tokens", type=int, default=None, help="text tokens (default 77; quick 16)")
    parser.add_argument("--vae_preset", default=None, help="our VAE preset (default small; quick tiny)")
    parser.add_argument("--vae_channels", default=None,
                        help="override our VAE block_out_channels, comma-separated; '' keeps the preset's "
                             "(default 64,128,256,256 with the small preset; quick: the tiny preset's)")
    parser.add_argument("--flow_preset", default=None,
                        help="our flow-transformer preset (default small; quick tiny)")
    parser.add_argument("--legacy_checkpointing", action="store_true",
                        help="run the earlier release with its activation checkpointing, as released")
    parser.add_argument("--legacy_contiguous", action="store_true",
                        help="make the earlier release's ConvTranspose2d inputs contiguous (avoids a slow "
                             "CPU backward path for channels_last inputs; same maths)")
    parser.add_argument("--legacy_python", default=str(LEGACY_PYTHON),
                        help="python of the earlier release's venv")
    parser.add_argument("--no_legacy", action="store_true", help="skip the earlier release")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="tiny models, 32 px, batch 2, 2 steps (development)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = dict(img_size=32 if quick else 64, batch_size=2 if quick else 4, steps=2 if quick else 5,
                    text_tokens=16 if quick else 77, vae_preset="tiny" if quick else "small",
                    flow_preset="tiny" if quick else "small")
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.vae_channels is None:
        args.vae_channels = "64,128,256,256" if args.vae_preset.removeprefix("fluxflow-") == "small" else ""
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._worker:
        print(JSON_TAG + json.dumps(measure(json.loads(args._worker))))
        return 0
    legacy = None if args.no_legacy else Path(args.legacy_python)
    start = time.perf_counter()
    result = compare(args, isolate=True, legacy_python=legacy)
    result["total_s"] = time.perf_counter() - start
    print(report(result))
    print(f"\ntotal {result['total_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
