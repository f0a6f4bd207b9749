#!/usr/bin/env bash
# Every benchmark of benchmarks/ at GPU sizes, bf16, on one CUDA GPU (sized for one H200), in under 10 minutes.
#
#     bash benchmarks/gpu.sh [OUT_DIR]          # default OUT_DIR: benchmarks/results/gpu
#
# Writes, under OUT_DIR:
#     summary.md     the machine (GPU, driver, torch, CPU), one status line per benchmark (ok / failed rc /
#                    timed out / skipped, seconds) and every benchmark's full output: the one file to keep;
#     logs/NAME.txt  each benchmark's stdout + stderr, as it ran.
# Through the project's device tool (which returns at most 8 files from $OUT): run
#     bash benchmarks/gpu.sh /tmp/gpu; cp /tmp/gpu/summary.md "$OUT"/
#
# Rules of the script:
#   * one failing or hanging benchmark never stops the others: each runs under `timeout` (its own cap, and
#     never past the whole run's budget, BUDGET_S, default 570 s), its exit status is recorded, and the
#     script goes on (the script itself runs with `set -euo pipefail` for its own mistakes);
#   * a benchmark script that is absent is skipped with a message;
#   * the bf16 flag is spelled as each script accepts it (`--dtype bfloat16` or `--dtype bf16`, read from its
#     --help), since the scripts of benchmarks/ do not all use the same names;
#   * it holds /tmp/fluxflow-bench.lock (when `flock` exists) so that no other benchmark runs meanwhile.
# Environment: PYTHON (default .venv/bin/python, else python3), BUDGET_S. Order: the issue-I cost benchmarks
# first (Bezier cost, MFU), then the comparisons, then the older CPU-era benchmarks, then --torch_compile's cost.
set -euo pipefail

if [ -n "${1:-}" ]; then                          # OUT_DIR as given, relative to the caller's directory
    mkdir -p "$1"
    OUT_DIR="$(cd "$1" && pwd)"
fi
cd "$(dirname "$0")/.."                           # repository root
OUT_DIR="${OUT_DIR:-benchmarks/results/gpu}"
LOG_DIR="$OUT_DIR/logs"
SUMMARY="$OUT_DIR/summary.md"
BUDGET_S="${BUDGET_S:-570}"                       # whole run; 30 s kept for start-up and the summary
mkdir -p "$LOG_DIR"

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! "$PY" -c "import fluxflow" 2>/dev/null; then   # a bare checkout: use the sources in place
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi

if command -v flock >/dev/null; then              # serialize with other benchmark runs on this machine
    exec 9>/tmp/fluxflow-bench.lock
    flock 9
fi

START=$SECONDS
STATUS=()                                        # one markdown row per benchmark
NAMES=()                                         # the benchmarks, in the order they ran

# bf16 NAME: the spelling of bfloat16 that NAME's --dtype accepts ("bfloat16" or "bf16").
bf16() {
    local help
    help="$(timeout 120 "$PY" "$1" --help 2>/dev/null || true)"
    if grep -Eq '\{[^}]*\bbfloat16\b[^}]*\}' <<<"$help"; then echo bfloat16; else echo bf16; fi
}

# bench NAME CAP_S SCRIPT ARGS...: run one benchmark, soft-failing, under min(CAP_S, what is left of BUDGET_S).
bench() {
    local name="$1" cap="$2" script="$3"
    shift 3
    local log="$LOG_DIR/$name.txt" left=$((BUDGET_S - (SECONDS - START)))
    NAMES+=("$name")
    if [ ! -f "$script" ]; then
        echo "== $name: $script not found, skipped" | tee "$log"
        STATUS+=("| $name | skipped: $script not found | 0 |")
        return 0
    fi
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped, the ${BUDGET_S}s budget is spent" | tee "$log"
        STATUS+=("| $name | skipped: out of the ${BUDGET_S} s budget | 0 |")
        return 0
    fi
    local limit=$((cap < left ? cap : left)) began=$SECONDS rc=0
    echo "== $name (timeout ${limit}s): $PY $script $*" | tee "$log"
    timeout --kill-after=15 "$limit" "$PY" "$script" "$@" >>"$log" 2>&1 || rc=$?
    local took=$((SECONDS - began)) state="ok"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then state="timed out after ${limit} s"
    elif [ "$rc" -ne 0 ]; then state="failed, exit status $rc (see logs/$name.txt)"; fi
    echo "== $name: $state, ${took}s"
    STATUS+=("| $name | $state | $took |")
}

# ---------------------------------------------------------------------------------------- the benchmarks
# Bezier vs GELU/SiLU per output element: 134 M outputs (32768 tokens x 4096 channels; Bezier reads 671 M
# bf16 inputs, 1.3 GB), eager and torch.compile; FeedForward(2048 -> 4096) on 16384 tokens.
bench bezier_cost 150 benchmarks/bezier_cost.py --device cuda --dtype "$(bf16 benchmarks/bezier_cost.py)" \
    --rows 32768 --channels 4096 --layer_rows 16384 --repeats 10

# MFU of a FluxFlowTransformer training step (autocast bf16, AdamW) vs the measured bf16 matmul peak:
# small and base presets, batch 32 of 1024 image tokens (64x64 latents = 512-px images), 10 timed steps.
bench mfu 90 benchmarks/mfu.py --device cuda --dtype "$(bf16 benchmarks/mfu.py)" --preset small base \
    --batch_size 32 --tokens 1024 --steps 10

# Training steps vs peers (diffusers; the earlier release is skipped when its venv is absent), base presets,
# 256 px, batch 16: the GPU command line of peers.py's docstring.
bench peers 90 benchmarks/peers.py --device cuda --dtype "$(bf16 benchmarks/peers.py)" --img_size 256 \
    --batch_size 16 --vae_preset base --vae_channels "" --flow_preset base --steps 20 --warmup 5

# Pipeline overhead and steps vs prompt adherence (trains a small shapes pipeline first when none is found).
bench sampling 120 benchmarks/sampling.py --device cuda --dtype "$(bf16 benchmarks/sampling.py)"

# Bezier vs SiLU vs GELU VAE ablation: one seed, no size sweep, to fit the budget.
bench ablation 120 benchmarks/ablation.py --device cuda --dtype "$(bf16 benchmarks/ablation.py)" \
    --seeds 0 --no_sweep

# Bezier vs GELU flow processors at equal parameters, adherence vs training time: two models, 400 steps, on
# the VAE of the shapes pipeline sampling.py trained (the script trains its own when that is absent).
FLOW_VAE=()
[ -f outputs/sampling/flow/pipeline/vae/config.json ] && FLOW_VAE=(--vae outputs/sampling/flow/pipeline/vae)
bench flow_ablation 120 benchmarks/flow_ablation.py --device cuda --dtype "$(bf16 benchmarks/flow_ablation.py)" \
    --steps 400 --models bezier gelu ${FLOW_VAE[@]+"${FLOW_VAE[@]}"}

# FLOPs per 512-px image (counted on the CPU: the script has no device flag; FLOPs do not depend on it).
bench model_flops 45 benchmarks/model_flops.py --preset base --img_size 512

# Flow training with vs without cached text embeddings (fluxflow-train picks the GPU through Accelerate;
# the script has no device or dtype flag).
bench flow_text_cache 75 benchmarks/flow_text_cache.py --steps 30 --img_size 64 --batch_size 32

# Data loader vs a GPU training step of the small VAE (the script has no dtype flag).
bench data_loader 60 benchmarks/data_loader.py --device cuda --sizes 256 512 --workers 0 8 \
    --formats jpg png --batch_size 16 --batches 8

# --torch_compile (regional compilation) vs eager on the shapes demo's flow and VAE stages (small preset, 32 px,
# batch 16), bf16 autocast and TF32: cold compile (first step), steady s/step, break-even steps; 5 processes.
bench compile_cost 180 benchmarks/compile_cost.py --device cuda --dtype "$(bf16 benchmarks/compile_cost.py)" \
    --steps 200

# ------------------------------------------------------------------------------------------- the summary
{
    echo "# GPU benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 || true
    (lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)") || true
    echo '```'
    echo
    echo "| benchmark | status | seconds |"
    echo "|---|---|---:|"
    printf '%s\n' "${STATUS[@]}"
    echo
    echo "Total: $((SECONDS - START)) s of a ${BUDGET_S} s budget."
    for name in "${NAMES[@]}"; do
        echo
        echo "## $name"
        echo
        echo '```'
        cat "$LOG_DIR/$name.txt"
        echo '```'
    done
} >"$SUMMARY"
echo "wrote $SUMMARY ($((SECONDS - START)) s)"
