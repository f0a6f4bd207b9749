"""What a BezierActivation costs next to GELU and SiLU: forward+backward time and saved-activation memory.

    python benchmarks/bezier_cost.py                                   # CPU, fp32, 4096 x 1024 outputs
    python benchmarks/bezier_cost.py --quick                           # ~20 s dev run
    python benchmarks/bezier_cost.py --device cuda --dtype bfloat16 --rows 32768 --channels 4096
    python benchmarks/bezier_cost.py --threads 1 --sweep_rows 64 256 1024 4096 16384   # size sweep only

Why: every FluxFlow MLP is ``Linear(d, 5h) -> BezierActivation -> h`` where other models use
``Linear(d, h) -> GELU``. This measures the activation itself on the SAME OUTPUT size ``[rows, channels]``
(Bezier reads ``5 * channels`` inputs per row, the chunks ``[t | p0 | p1 | p2 | p3]``), in eager mode and
under ``torch.compile``:

* time: the best of ``--repeats`` forward + backward passes (``torch.autograd.grad`` of the output against
  a fixed upstream gradient), after warm-up (which includes compilation);
* saved bytes: the distinct storages packed for backward, seen by ``torch.autograd.graph.saved_tensors_hooks``
  (what stays alive between the forward and the backward of a training step: the cost that multiplies by the
  number of layers);
* peak: the most bytes allocated above the inputs during forward + backward (output, saved tensors,
  temporaries, input gradient), from ``torch.cuda.max_memory_allocated`` on GPU and from the profiler's
  allocation events on CPU.

Rows compared ("mode" eager: the call runs eagerly; compiled: the whole call is ``torch.compile``-d):

* ``GELU`` and ``SiLU`` on ``[rows, channels]``: the cost of a plain activation per output;
* ``GELU, 5x input``: GELU on ``[rows, 5 * channels]``, the same number of INPUT elements (and input
  gradient bytes) as Bezier: the apples-to-apples reference for an element-wise op that costs memory traffic;
* ``Bezier, eager kernels`` / ``Bezier, compiled kernels``: ``fluxflow.models.bezier.bezier_activation``, the
  custom autograd function (sigmoid on t, points as they are: it saves ``t`` and ``dB/dt``, two output-sized
  tensors), with each of its kernel sets (``set_bezier_kernels``; the default ``auto`` is compiled on CUDA,
  eager elsewhere), in an eager model;
* ``Bezier`` (compiled): the same function traced by an outer ``torch.compile`` (its plain formulas, fused by
  inductor, which also picks what to save);
* ``Bezier, previous custom function``: the custom function as it was before this benchmark (saved its
  input; formula forward; backward recomputing the curve with a fresh tensor per term and a ``torch.cat``):
  the "before";
* ``Bezier, plain autograd``: the reference formula ``bezier(sigmoid(t), p0, p1, p2, p3)`` under ordinary
  autograd, as the earlier release computed it: every intermediate is saved.

Ratios are against GELU eager and GELU compiled. Bezier reads five times the inputs, writes five times the
input gradient and does about ten times the arithmetic per output, so "x GELU" is not a like-for-like
comparison: it is the price of the activation per output unit; "GELU, 5x input" is the like-for-like one.
A second table (``--layer_rows``, 0 to skip) times the layer as the models use it, ``FeedForward(d, h)``
with Bezier (``Linear(d, 5h)``) vs GELU (``Linear(d, h)``), where the matmuls dominate.

CPU caveats. On Linux, glibc hands buffers above its mmap threshold (at most 32 MB) back to the OS when they
are freed, so every fresh 80 MB input gradient is page-faulted again: at the default size that costs tens of
ms per call and hits the 5x-input rows, not GELU's 16 MB buffers. To time the kernels rather than the
allocator, run with ``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736``. On a shared
2-core VM use ``--threads 1``: with 2 threads a busy other core stalls every parallel kernel.

Size sweep (``--sweep_rows R1 R2 ...``, replaces the tables above): for each ``[R, channels]`` output, ms
of forward + backward of GELU compiled and eager, Bezier with its eager and its compiled kernels (eager model)
and Bezier with the whole call compiled, and the ratio of each Bezier row to GELU compiled. Small sizes stay
in cache and are bound by arithmetic (and per-call overhead), large ones by memory bandwidth, where the fused
Bezier must move at least 16 words per output against GELU's 5. A size below ``--rows`` gets
``--repeats * rows / R`` repeats (at most 20x: about the same elements per size, since its calls last
microseconds); no peak memory.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fluxflow.models.bezier import bezier, bezier_activation, set_bezier_kernels
from fluxflow.models.layers import FeedForward

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import DTYPE_ALIASES, add_device_args, sync  # noqa: E402


def with_kernels(kernels: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The shipped activation (last-dim chunks, sigmoid on t) with ``set_bezier_kernels(kernels)`` for this
    call (its backward uses the kernels chosen at forward time)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        previous = set_bezier_kernels(kernels)
        try:
            return bezier_activation(x, -1)
        finally:
            set_bezier_kernels(previous)

    fn.__name__ = f"bezier_{kernels}_kernels"
    return fn


def bezier_default(x: torch.Tensor) -> torch.Tensor:
    return bezier_activation(x, -1)


class _PreviousBezierFunction(torch.autograd.Function):
    """The custom function as it was before this benchmark, for before/after (sigmoid on t, points as they
    are): saves ``x``; forward is the Bernstein formula; backward recomputes and writes every term of the
    derivative as a fresh tensor, then ``torch.cat``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        a_t, p0, p1, p2, p3 = x.chunk(5, dim=-1)
        return bezier(torch.sigmoid(a_t), p0, p1, p2, p3)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        a_t, p0, p1, p2, p3 = x.chunk(5, dim=-1)
        t = torch.sigmoid(a_t)
        dt = t * (1 - t)
        s = 1 - t
        dB_dt = 3 * (s * s * (p1 - p0) + 2 * s * t * (p2 - p1) + t * t * (p3 - p2))
        weights = (s * s * s, 3 * s * s * t, 3 * s * t * t, t * t * t)
        return torch.cat([grad_out * dB_dt * dt, *(grad_out * w for w in weights)], dim=-1)


def bezier_previous(x: torch.Tensor) -> torch.Tensor:
    return _PreviousBezierFunction.apply(x)


def bezier_plain_autograd(x: torch.Tensor) -> torch.Tensor:
    """The same curve through ordinary autograd: every intermediate of the formula is saved."""
    t, p0, p1, p2, p3 = x.chunk(5, dim=-1)
    return bezier(torch.sigmoid(t), p0, p1, p2, p3)


@dataclass(frozen=True)
class Variant:
    name: str
    in_mult: int  # input channels per output channel
    out_mult: int  # output channels per `channels`
    fn: Callable[[torch.Tensor], torch.Tensor]
    modes: tuple[str, ...] = ("eager", "compiled")
    needs_compile: bool = False  # skipped where torch.compile does not work


VARIANTS = (
    Variant("GELU", 1, 1, F.gelu),
    Variant("SiLU", 1, 1, F.silu),
    Variant("GELU, 5x input", 5, 5, F.gelu),
    Variant("Bezier, eager kernels", 5, 1, with_kernels("eager"), ("eager",)),
    Variant("Bezier, compiled kernels", 5, 1, with_kernels("compiled"), ("eager",), needs_compile=True),
    # traced by an outer torch.compile, the function runs its plain formulas whatever the kernel choice
    Variant("Bezier", 5, 1, bezier_default, ("compiled",)),
    Variant("Bezier, previous custom function", 5, 1, bezier_previous, ("eager",)),
    Variant("Bezier, plain autograd", 5, 1, bezier_plain_autograd),
)


# the size sweep: the rows the issue asks about (GELU's reference and the Bezier forms worth shipping)
SWEEP_VARIANTS = tuple(v for v in VARIANTS
                       if v.name in ("GELU", "Bezier, eager kernels", "Bezier, compiled kernels", "Bezier"))
# (variant, mode) -> column label; the Bezier ones also get a "/ GELU compiled" ratio column
SWEEP_COLUMNS = {("GELU", "compiled"): "GELU compiled", ("GELU", "eager"): "GELU eager",
                 ("Bezier, eager kernels", "eager"): "Bezier eager kernels",
                 ("Bezier, compiled kernels", "eager"): "Bezier compiled kernels",
                 ("Bezier", "compiled"): "Bezier whole call compiled"}


def make_inputs(v: Variant, rows: int, channels: int, dtype, device: str, seed: int = 0):
    gen = torch.Generator(device=device).manual_seed(seed)  # drawn where they are used: GPU sizes are GBs
    x = torch.randn(rows, v.in_mult * channels, generator=gen, device=device, dtype=dtype).requires_grad_()
    g = torch.randn(rows, v.out_mult * channels, generator=gen, device=device, dtype=dtype)
    return x, g


def fwd_bwd(fn, x, g):
    (gx,) = torch.autograd.grad(fn(x), x, g)
    return gx


def time_ms(step: Callable[[], object], repeats: int, device: str, warmup: int = 2) -> float:
    """Best-of-``repeats`` milliseconds of one ``step()`` (a sample averages 10 calls on GPU), after
    ``warmup`` calls. The minimum, not the median: on a shared machine it is the run least disturbed."""
    for _ in range(warmup):
        step()
    sync(device)
    inner = 10 if device.startswith("cuda") else 1
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            step()
        sync(device)
        runs.append((time.perf_counter() - start) * 1000 / inner)
    return min(runs)


def saved_bytes(fn, x) -> tuple[int, int]:
    """(bytes, count) of the distinct storages autograd keeps for backward of ``fn(x)``.

    Views of one storage (the five chunks of ``x``, a tensor saved twice) are counted once, at the size
    of the storage: that is the memory the graph holds alive."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x)
    del y
    return sum(storages.values()), len(storages)


def peak_bytes(fn, x, g, device: str) -> int:
    """Most bytes allocated above what existed before, during one forward + backward."""
    if device.startswith("cuda"):
        sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        gx = fwd_bwd(fn, x, g)
        sync(device)
        del gx
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        gx = fwd_bwd(fn, x, g)
        del gx
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def compile_works(device: str) -> tuple[bool, str]:
    """Whether ``torch.compile`` (inductor) runs forward + backward here; on CPU it needs a C++ compiler."""
    try:
        fn = torch.compile(lambda v: F.gelu(v) * 2, dynamic=False)
        x = torch.randn(64, device=device, requires_grad=True)
        fn(x).sum().backward()
        return True, "ok"
    except Exception as err:  # noqa: BLE001 - any failure means "report eager only"
        return False, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def compiled(fn):
    """A fresh ``torch.compile`` (inductor, static shapes) of ``fn``."""
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


def measure(rows: int, channels: int, dtype=torch.float32, device: str = "cpu", modes=("eager", "compiled"),
            repeats: int = 5, variants=VARIANTS, with_peak: bool = True) -> list[dict]:
    """One dict per (variant, mode): ms, saved bytes/count, peak bytes, output bytes."""
    results = []
    for v in variants:
        if v.needs_compile and "compiled" not in modes:
            continue
        for mode in (m for m in modes if m in v.modes):
            fn = compiled(v.fn) if mode == "compiled" else v.fn
            x, g = make_inputs(v, rows, channels, dtype, device)
            ms = time_ms(functools.partial(fwd_bwd, fn, x, g), repeats, device)
            saved, count = saved_bytes(fn, x)
            peak = peak_bytes(fn, x, g, device) if with_peak else 0
            results.append({"name": v.name, "mode": mode, "in_mult": v.in_mult, "ms": ms, "saved": saved,
                            "saved_count": count, "peak": peak, "out_bytes": g.numel() * g.element_size(),
                            "x_bytes": x.numel() * x.element_size()})
    return results


def sweep(rows_list, channels: int, dtype=torch.float32, device: str = "cpu", modes=("eager", "compiled"),
          repeats: int = 9, ref_rows: int = 4096) -> list[dict]:
    """:func:`measure` of :data:`SWEEP_VARIANTS` (no peak memory) at outputs ``[rows, channels]`` for each of
    ``rows_list``; a size below ``ref_rows`` gets ``repeats * ref_rows / rows`` repeats (at most 20x), so
    that its best-of is not one scheduler hiccup. One dict per size: rows, channels, repeats, results."""
    out = []
    for rows in rows_list:
        reps = min(20 * repeats, max(repeats, repeats * ref_rows // max(rows, 1)))
        results = measure(rows, channels, dtype, device, modes, reps, SWEEP_VARIANTS, with_peak=False)
        out.append({"rows": rows, "channels": channels, "repeats": reps, "results": results})
    return out


def format_sweep(points: list[dict], dtype=torch.float32) -> str:
    """Markdown table of :func:`sweep`: ms per form and Bezier / GELU compiled (``-`` where not measured)."""
    size = torch.finfo(dtype).bits // 8
    head = ["output [rows, ch]", "output MB", "Bezier input MB", "best of",
            *(f"{label} ms" for label in SWEEP_COLUMNS.values()),
            *(f"{label} / GELU compiled" for label in list(SWEEP_COLUMNS.values())[2:])]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for p in points:
        by = {(r["name"], r["mode"]): r["ms"] for r in p["results"]}
        gelu_c = by.get(("GELU", "compiled"))
        n = p["rows"] * p["channels"]
        cells = [f"[{p['rows']}, {p['channels']}]", f"{n * size / 2**20:.2f}", f"{5 * n * size / 2**20:.2f}",
                 str(p["repeats"])]
        cells += [f"{by[c]:.3f}" if c in by else "-" for c in SWEEP_COLUMNS]
        cells += [f"{by[c] / gelu_c:.2f}x" if c in by and gelu_c else "-" for c in list(SWEEP_COLUMNS)[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure_layers(rows: int, hidden: int, dtype=torch.float32, device: str = "cpu",
                   modes=("eager", "compiled"), repeats: int = 3) -> list[dict]:
    """``FeedForward(hidden // 2, hidden)`` (mlp_ratio 2, as the presets) with Bezier vs GELU: ms of forward +
    backward with input and weight gradients."""
    dim = hidden // 2
    results = []
    for act in ("gelu", "bezier"):
        torch.manual_seed(0)
        layer = FeedForward(dim, hidden, act).to(device, dtype)
        for mode in modes:
            fn = compiled(layer) if mode == "compiled" else layer
            x = torch.randn(rows, dim, device=device, dtype=dtype, requires_grad=True)
            g = torch.randn(rows, dim, device=device, dtype=dtype)

            ms = time_ms(functools.partial(_layer_step, fn, layer, x, g), repeats, device)
            results.append({"name": f"FeedForward {act}", "mode": mode, "ms": ms,
                            "params": sum(p.numel() for p in layer.parameters())})
    return results


def _layer_step(fn, layer, x, g) -> None:
    fn(x).backward(g)
    x.grad = None
    layer.zero_grad(set_to_none=True)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


def format_table(results: list[dict]) -> str:
    ref = {r["mode"]: r["ms"] for r in results if r["name"] == "GELU"}
    cols = ["activation", "mode", "ms fwd+bwd", "x GELU eager"]
    cols += ["x GELU compiled"] if "compiled" in ref else []
    cols += ["saved MB", "saved tensors", "saved / output bytes", "peak MB"]
    lines = ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * (len(cols) - 2)]
    for r in results:
        cells = [r["name"], r["mode"], f"{r['ms']:.2f}", f"{r['ms'] / ref['eager']:.2f}x"]
        if "compiled" in ref:
            cells.append(f"{r['ms'] / ref['compiled']:.2f}x")
        cells += [_mb(r["saved"]), str(r["saved_count"]), f"{r['saved'] / r['out_bytes']:.1f}",
                  _mb(r["peak"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_layer_table(results: list[dict]) -> str:
    ref = {r["mode"]: r["ms"] for r in results if r["name"] == "FeedForward gelu"}
    lines = ["| layer | mode | params | ms fwd+bwd | x GELU layer, same mode |", "|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['mode']} | {r['params']:,} | {r['ms']:.2f} | "
                     f"{r['ms'] / ref[r['mode']]:.2f}x |")
    return "\n".join(lines)


def summary(results: list[dict]) -> str:
    by = {(r["name"], r["mode"]): r for r in results}
    lines = []
    if ("GELU", "compiled") in by:
        gelu_c = by["GELU", "compiled"]["ms"]
        for name, mode in (("Bezier, eager kernels", "eager"), ("Bezier, compiled kernels", "eager"),
                           ("Bezier", "compiled")):
            if (name, mode) in by:
                ratio = by[name, mode]["ms"] / gelu_c
                lines.append(f"- {name} ({mode}) / GELU compiled: {ratio:.2f}x "
                             f"({'within' if ratio <= 1.5 else 'NOT within'} the 1.5x target)")
    new = by.get(("Bezier, eager kernels", "eager"))
    old = by.get(("Bezier, previous custom function", "eager"))
    if new and old:
        lines.append(f"- eager kernels, previous -> now: {old['ms']:.2f} -> {new['ms']:.2f} ms "
                     f"({old['ms'] / new['ms']:.2f}x faster), peak {_mb(old['peak'])} -> "
                     f"{_mb(new['peak'])} MB, saved {_mb(old['saved'])} -> {_mb(new['saved'])} MB")
    for name, mode in (("Bezier, eager kernels", "eager"), ("Bezier", "compiled")):
        if (name, mode) in by:
            custom, plain = by[name, mode], by["Bezier, plain autograd", mode]
            lines.append(f"- {mode}: the custom function saves {_mb(custom['saved'])} MB for backward, plain "
                         f"autograd {_mb(plain['saved'])} MB ({plain['saved'] / custom['saved']:.1f}x); "
                         f"like-for-like, Bezier / GELU on 5x input: "
                         f"{custom['ms'] / by['GELU, 5x input', mode]['ms']:.2f}x time")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_args(parser, "float32", "float32 (CPU default), bfloat16 or float16; or fp32/bf16/fp16")
    parser.add_argument("--rows", type=int, default=4096, help="tokens (batch x sequence) per call")
    parser.add_argument("--channels", type=int, default=1024, help="OUTPUT channels (Bezier reads 5x)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--layer_rows", type=int, default=2048,
                        help="rows for the FeedForward table; 0 skips it")
    parser.add_argument("--no_compile", action="store_true", help="eager only")
    parser.add_argument("--quick", action="store_true", help="small sizes, a ~20 s dev run")
    parser.add_argument("--sweep_rows", type=int, nargs="+", default=None, metavar="ROWS",
                        help="instead of the tables: a size sweep over outputs [ROWS, channels] of GELU "
                             "(compiled, eager) and Bezier (eager kernels, compiled kernels, whole call "
                             "compiled), with Bezier / GELU compiled")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.rows, args.channels, args.repeats, args.layer_rows = 512, 512, 3, 256
    args.dtype = DTYPE_ALIASES.get(args.dtype, args.dtype)
    dtype = getattr(torch, args.dtype)
    modes = ["eager"]
    if not args.no_compile:
        ok, why = compile_works(args.device)
        modes += ["compiled"] if ok else []
        if not ok:
            print(f"torch.compile does not work here ({why}); eager only.\n")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    if args.sweep_rows:
        print(f"size sweep: outputs [rows, {args.channels}], rows {args.sweep_rows}, {args.dtype}, "
              f"{args.device} ({device_name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"best of {args.repeats} (more at small sizes, column 'best of')\n")
        points = sweep(args.sweep_rows, args.channels, dtype, args.device, modes, args.repeats, args.rows)
        print(format_sweep(points, dtype))
        return 0
    print(f"output [{args.rows}, {args.channels}] ({args.rows * args.channels / 1e6:.1f} M elements), "
          f"{args.dtype}, "
          f"{args.device} ({device_name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}\n")
    results = measure(args.rows, args.channels, dtype, args.device, modes, args.repeats)
    print(format_table(results))
    print()
    print(summary(results))
    if args.layer_rows:
        print(f"\nFeedForward(d={args.channels // 2}, h={args.channels}) on "
              f"[{args.layer_rows}, {args.channels // 2}]"
              f" tokens, forward + backward (input and weight gradients)\n")
        print(format_layer_table(measure_layers(args.layer_rows, args.channels, dtype, args.device, modes,
                                                max(3, args.repeats // 2))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
