"""FluxFlowVAE vs diffusers' AutoencoderKL at equal parameters: the training step of benchmarks/peers.py
part (a), repeated in alternating fresh processes so that a shared machine's drift cancels in the ratios.

    python benchmarks/vae_peer.py                         # 64 px, batch 4, fp32, 1 thread, 7 rounds
    python benchmarks/vae_peer.py --activation silu       # the same widths with another activation
    python benchmarks/vae_peer.py --activation silu --layers_per_block 0,1,2,2   # depth at low resolution
    python benchmarks/vae_peer.py --set mid_block_attention=false   # any other FluxFlowVAE config value
    python benchmarks/vae_peer.py --profile               # where the memory and time go, per module
    python benchmarks/vae_peer.py --quick --rounds 1      # tiny models, 32 px, batch 2 (CI)

Our VAE is the ``small`` preset widened to 64/128/256/256 channels, as in peers.py (``--vae_preset``,
``--vae_channels``), with the model's default activation unless ``--activation`` says otherwise.

One round measures both models, each in its own fresh process (peers.py's worker: build, warm-up, timed
steps, peak RSS increase over the steps), in the order ours-peer on even rounds and peer-ours on odd ones.
The table gives each model's median over rounds and the median of the per-round ratios ours / peer with
their min-max and interquartile range: a ratio pairs two processes run back to back, so load that changes
slowly hits both. The peer is matched as peers.py does it (our stage count and latent channels, widths =
ours times a common factor, 1 or 2 layers per block; nearest parameter count).

``--profile`` runs one training step of each model in this process with hooks and prints, per module, the
bytes saved for backward (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once,
parameters excluded) and the forward and backward seconds (module hooks and autograd-node hooks; each op
goes to the innermost module that ran it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
import torch  # noqa: E402
from bench_common import machine, table  # noqa: E402
from peers_common import vae_loss  # noqa: E402

METRICS = (("step_s", "s/step", ".3f"), ("peak_mib", "peak MiB", ".0f"))


# ------------------------------------------------------------------------------------------- configs


def parse_value(text: str):
    """A ``--set`` value: JSON where it parses (numbers, lists, booleans), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def ours_config(args) -> dict:
    """Our VAE config: the preset, then ``--vae_channels``, ``--layers_per_block``, ``--activation`` and
    ``--set`` on top."""
    from fluxflow.models.presets import preset_config

    cfg = preset_config(args.vae_preset, "vae")
    cfg["activation"] = _default_activation()
    if args.vae_channels:
        cfg["block_out_channels"] = [int(c) for c in args.vae_channels.split(",")]
    for key in ("layers_per_block", "activation"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    for item in args.set:
        key, _, value = item.partition("=")
        cfg[key] = parse_value(value)
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
    cfg["sample_size"] = args.img_size
    return cfg


def _default_activation() -> str:
    """FluxFlowVAE's default activation (written into the config so the table names it)."""
    import inspect

    from fluxflow.models import FluxFlowVAE

    return inspect.signature(FluxFlowVAE.__init__).parameters["activation"].default


def parse_layers(text: str) -> int | list[int]:
    """``--layers_per_block``: ``1`` (every stage) or ``0,1,2,2`` (one count per stage)."""
    counts = [int(n) for n in text.split(",")]
    return counts[0] if len(counts) == 1 and "," not in text else counts


def specs(args) -> dict[str, dict]:
    """Worker specs (peers.py's ``measure``) for ``ours`` and its parameter-matched ``peer``."""
    cfg = ours_config(args)
    peer_cfg, _ = peers.match_autoencoder_kl(cfg, peers.params_of("vae", "ours", cfg))
    common = dict(part="vae", img_size=args.img_size, batch=args.batch_size, steps=args.steps,
                  warmup=args.warmup, device=args.device, dtype=args.dtype, seed=args.seed,
                  threads=args.threads)
    return {"ours": dict(who="ours", config=cfg, **common),
            "peer": dict(who="diffusers", config=peer_cfg, **common)}


# ---------------------------------------------------------------------------------------- interleaving


def run_rounds(plan: dict[str, dict], rounds: int, measure=peers.measure_isolated, log=print) -> list[dict]:
    """``rounds`` rounds of both models, ours first on even rounds and the peer first on odd ones."""
    results = []
    for r in range(rounds):
        order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
        row = {}
        for who in order:
            res = measure(plan[who])
            row[who] = {k: res[k] for k in ("step_s", "peak_mib", "params", "mem_method")}
        log(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{who} {row[who]['step_s']:.3f} s {row[who]['peak_mib']:.0f} MiB" for who in ("ours", "peer")))
        results.append(row)
    return results


def spread(values: list[float]) -> dict:
    """Median, min, max and quartiles (inclusive method; equal to the median for one value)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q1, "q3": q3}


def summarize(results: list[dict]) -> dict:
    """Per-model medians and the spread of the per-round ratios ours / peer, for time and memory."""
    out = {}
    for key, _, _ in METRICS:
        out[key] = {who: spread([r[who][key] for r in results]) for who in ("ours", "peer")}
        out[key]["ratio"] = spread([r["ours"][key] / r["peer"][key] for r in results])
    out["params"] = {who: results[0][who]["params"] for who in ("ours", "peer")}
    out["mem_method"] = results[0]["ours"]["mem_method"]
    return out


def report(plan: dict[str, dict], summary: dict, rounds: int) -> str:
    """The table: model medians, then the ratio's median, min-max and interquartile range."""
    params = summary["params"]
    rows = []
    for key, label, fmt in METRICS:
        s = summary[key]
        q = s["ratio"]
        rows.append([label, format(s["ours"]["median"], fmt), format(s["peer"]["median"], fmt),
                     f"{q['median']:.2f}x", f"{q['min']:.2f}-{q['max']:.2f}", f"{q['q1']:.2f}-{q['q3']:.2f}"])
    header = ["per step", "ours (median)", "AutoencoderKL (median)", "ours / peer (median)", "min-max", "IQR"]
    ours, peer = plan["ours"]["config"], plan["peer"]["config"]
    lines = [f"ours: {describe(ours)}; {params['ours'] / 1e6:.2f} M parameters",
             f"peer: AutoencoderKL block_out_channels={peer['block_out_channels']}, "
             f"layers_per_block={peer['layers_per_block']}; {params['peer'] / 1e6:.2f} M parameters "
             f"(ours / peer {params['ours'] / params['peer']:.2f}x)", "", table(header, rows), "",
             f"{rounds} round(s), each model in a fresh process per round; ratios are per round, below 1x "
             f"favour ours; peak memory: {summary['mem_method']}"]
    return "\n".join(lines)


def describe(cfg: dict) -> str:
    """The config values that shape a model, main ones first."""
    keys = ("block_out_channels", "layers_per_block", "activation", "latent_channels")
    rest = [k for k in cfg if k not in keys and k not in ("sample_size", "in_channels", "out_channels")]
    return ", ".join(f"{k}={cfg[k]}" for k in (*keys, *rest) if k in cfg).replace(" ", "").replace(",", ", ")


# ------------------------------------------------------------------------------------------- profiling


def _tensors(obj):
    """The tensors in a module's inputs or outputs (nested tuples, lists, dicts, diffusers outputs)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


class ModuleProfile:
    """Bytes saved for backward and forward/backward seconds per module during one training step; each
    saved tensor and autograd node goes to the innermost module running when it was made."""

    OUTSIDE = "(outside modules: loss, sampling)"

    def __init__(self, model: torch.nn.Module):
        self.names = {m: n or type(m).__name__ for n, m in model.named_modules()}
        self.kinds = {n or type(m).__name__: type(m).__name__ for n, m in model.named_modules()}
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.saved, self.fwd, self.bwd = defaultdict(int), defaultdict(float), defaultdict(float)
        self.stack, self.owner, self.started, self.storages = [], {}, {}, set()
        self.handles = []
        for m in model.modules():
            self.handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post))

    def current(self) -> str:
        return self.stack[-1][0] if self.stack else self.OUTSIDE

    def _claim(self, tensors, name: str) -> None:
        """Give the unclaimed autograd nodes behind ``tensors`` to ``name`` and time them in backward."""
        todo = [t.grad_fn for t in tensors if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.owner:
                continue
            self.owner[node] = name
            node.register_prehook(lambda g, node=node: self.started.__setitem__(node, time.perf_counter()))
            node.register_hook(lambda gi, go, node=node: self._node_done(node))
            todo += [n for n, _ in node.next_functions]

    def _node_done(self, node) -> None:
        self.bwd[self.owner[node]] += time.perf_counter() - self.started.pop(node)

    def _pre(self, module, args, kwargs):
        self._claim(_tensors((args, kwargs)), self.current())  # made by the caller before this call
        self.stack.append([self.names[module], time.perf_counter(), 0.0])

    def _post(self, module, args, output):
        name, start, children = self.stack.pop()
        elapsed = time.perf_counter() - start
        self.fwd[name] += elapsed - children
        if self.stack:
            self.stack[-1][2] += elapsed
        self._claim(_tensors(output), name)

    def pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.params and ptr not in self.storages:
            self.storages.add(ptr)
            self.saved[self.current()] += storage.nbytes()
        return t

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def role(name: str, kind: str) -> str:
    """A module's place with block indices dropped, e.g. ``compressor.act.proj (Conv2d)``."""
    parts = [p for p in name.split(".") if not p.isdigit()]
    tail = parts[-2:] if len(parts) > 2 else parts[1:]
    return ".".join([parts[0], *tail]) + f" ({kind})"


def profile_step(model: torch.nn.Module, x: torch.Tensor, gen: torch.Generator) -> dict:
    """One training step (after one unprofiled warm-up) with a :class:`ModuleProfile`."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(prof=None):
        opt.zero_grad(set_to_none=True)
        start = time.perf_counter()
        if prof is None:
            loss = _vae_loss(model, x, gen)
        else:
            with torch.autograd.graph.saved_tensors_hooks(prof.pack, lambda t: t):
                loss = _vae_loss(model, x, gen)
        mid = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        opt.step()
        return mid - start, end - mid

    step()
    prof = ModuleProfile(model)
    fwd_s, bwd_s = step(prof)
    prof.remove()
    prof.fwd[ModuleProfile.OUTSIDE] += fwd_s - sum(prof.fwd.values())
    prof.bwd[ModuleProfile.OUTSIDE] += bwd_s - sum(prof.bwd.values())
    return {"saved": dict(prof.saved), "fwd": dict(prof.fwd), "bwd": dict(prof.bwd), "kinds": prof.kinds,
            "fwd_s": fwd_s, "bwd_s": bwd_s}


def _vae_loss(model, x, gen):
    posterior = model.encode(x).latent_dist
    recon = model.decode(posterior.sample(generator=gen)).sample
    return vae_loss(recon, x, posterior.mean, posterior.logvar)


def profile_tables(result: dict, top: int) -> str:
    """Top modules by saved bytes and by forward + backward time, then the same summed by role."""
    names = set(result["saved"]) | set(result["fwd"]) | set(result["bwd"])
    per = {n: [result["saved"].get(n, 0), result["fwd"].get(n, 0.0), result["bwd"].get(n, 0.0), 1]
           for n in names}
    by_role = defaultdict(lambda: [0, 0.0, 0.0, 0])
    for n, values in per.items():
        key = role(n, result["kinds"][n]) if n in result["kinds"] else n
        by_role[key] = [a + b for a, b in zip(by_role[key], values)]
    total_saved, total_s = sum(v[0] for v in per.values()), result["fwd_s"] + result["bwd_s"]

    def rows(items: dict, by_time: bool, counted: bool) -> list[list]:
        def key(kv):
            return kv[1][1] + kv[1][2] if by_time else kv[1][0]

        order = sorted(items.items(), key=key, reverse=True)
        return [[n + (f" x{k}" if counted else ""), f"{b / 2**20:.1f}", f"{100 * b / total_saved:.0f}%",
                 f"{1e3 * f:.0f}", f"{1e3 * w:.0f}", f"{100 * (f + w) / total_s:.0f}%"]
                for n, (b, f, w, k) in order[:top]]

    header = ["module", "saved MiB", "share", "fwd ms", "bwd ms", "time share"]
    return "\n\n".join([
        f"saved for backward {total_saved / 2**20:.1f} MiB; forward {result['fwd_s']:.3f} s, "
        f"backward {result['bwd_s']:.3f} s (with hooks)",
        "by module, most saved bytes:\n" + table(header, rows(per, False, False)),
        "by module, most time:\n" + table(header, rows(per, True, False)),
        "by role (summed over blocks), most saved bytes:\n" + table(header, rows(by_role, False, True)),
        "by role, most time:\n" + table(header, rows(by_role, True, True))])


def profile(plan: dict[str, dict], top: int) -> str:
    """:func:`profile_step` for both models (this process), as text."""
    out = []
    for who, label in (("ours", "FluxFlowVAE (ours)"), ("peer", "diffusers AutoencoderKL")):
        spec = plan[who]
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        torch.manual_seed(spec["seed"])
        model = peers.build_model("vae", spec["who"], spec["config"]).train()
        gen = torch.Generator().manual_seed(spec["seed"])
        x = torch.rand(spec["batch"], 3, spec["img_size"], spec["img_size"], generator=gen) * 2 - 1
        tables = profile_tables(profile_step(model, x, gen), top)
        out.append(f"## {label}: {describe(spec['config'])}\n\n{tables}")
    return "\n\n".join(out)


# ------------------------------------------------------------------------------------------------- CLI


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="rounds of ours + peer, each in fresh processes")
    p.add_argument("--img_size", type=int, default=None, help="image side (default 64; quick 32)")
    p.add_argument("--batch_size", type=int, default=None, help="batch (default 4; quick 2)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per process, their median (default 5; quick 1)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default 1; 0 = torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae_preset", default=None, help="our VAE preset (default small; quick tiny)")
    p.add_argument("--vae_channels", default=None,
                   help="our block_out_channels, comma-separated (default 64,128,256,256 with the small "
                        "preset, as peers.py)")
    p.add_argument("--layers_per_block", type=parse_layers, default=None,
                   help="our layers_per_block: N, or one count per stage, highest resolution first (0,1,2,2)")
    p.add_argument("--activation", default=None, help="bezier, silu or gelu (default: the model's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other FluxFlowVAE config value (JSON or a string); repeatable")
    p.add_argument("--profile", action="store_true", help="per-module saved bytes and times, no rounds")
    p.add_argument("--top", type=int, default=12, help="rows per profile table")
    p.add_argument("--quick", action="store_true", help="tiny preset, 32 px, batch 2, 1 timed step")
    p.add_argument("--json", help="also write the raw rounds and summary to this file")
    args = p.parse_args(argv)
    defaults = dict(img_size=32 if args.quick else 64, batch_size=2 if args.quick else 4,
                    steps=1 if args.quick else 5, vae_preset="tiny" if args.quick else "small")
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.vae_channels is None and args.vae_preset.removeprefix("fluxflow-") == "small":
        args.vae_channels = "64,128,256,256"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = specs(args)
    print(machine(), flush=True)
    print(f"{args.img_size}x{args.img_size} images, batch {args.batch_size}, {args.dtype}, {args.device}, "
          f"{args.threads} thread(s); median of {args.steps} steps after {args.warmup} warm-up per process\n",
          flush=True)
    if args.profile:
        print(profile(plan, args.top))
        return 0
    results = run_rounds(plan, args.rounds, log=lambda m: print(m, file=sys.stderr, flush=True))
    summary = summarize(results)
    print(report(plan, summary, args.rounds))
    if args.json:
        raw = {"plan": plan, "rounds": results, "summary": summary}
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
