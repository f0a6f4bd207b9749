#!/usr/bin/env bash
# GPU-only checks of the distributed paths that CPU CI cannot reach (no FSDP/DeepSpeed without a GPU):
#   bash tests/gpu/check_distributed.sh [OUT_DIR]
# Needs: one or more CUDA GPUs, fluxflow importable (pip install -e . or PYTHONPATH=src), HF_HUB_OFFLINE=1.
# Prints one PASS/FAIL/SKIP line per check and a summary; exits 1 if any check failed. About 3 minutes.
set -uo pipefail
OUT=${1:-outputs/gpu_checks}
PY=${PYTHON:-python3}
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
FAILED=0

result() {  # name, exit code (0 = pass), log file
  if [ "$2" -eq 0 ]; then echo "PASS $1"; else echo "FAIL $1 (exit $2; log: $3)"; tail -n 20 "$3"; FAILED=1; fi
}
launch() {  # config, processes, output folder, flags...: accelerate launch of the real training program
  local config=$1 n=$2 out=$3; shift 3
  timeout 600 accelerate launch --config_file "$config" --num_processes "$n" -m fluxflow.cli.train \
    --data_path "$OUT/shapes/train" --img_size 64 --model_preset small --batch_size 8 --workers 2 --seed 0 \
    --no_samples --log_interval 1 --output_path "$out" "$@" >"$out.log" 2>&1
}
same_weights() {  # two output folders: 0 when their checkpoint.safetensors agree to bf16 tolerance
  $PY - "$1" "$2" <<'PY'
import sys, torch
from safetensors.torch import load_file
a, b = load_file(f"{sys.argv[1]}/checkpoint.safetensors"), load_file(f"{sys.argv[2]}/checkpoint.safetensors")
worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
print(f"max weight difference {worst:.3g}")
sys.exit(0 if a.keys() == b.keys() and worst < 1e-2 else 1)
PY
}

$PY -c "from fluxflow.datasets.shapes import write_shapes_dataset as w; w('$OUT/shapes', 256, size=64, seed=0)"

# 1. bf16 VAE stage on one GPU (DDP config when several): the VAE every later check starts from
launch accelerate_configs/single_gpu.yaml 1 "$OUT/vae" --train_vae --gan_training --max_train_steps 20
result "bf16 VAE + GAN stage, single_gpu.yaml" $? "$OUT/vae.log"
FLOW=(--train_diff_full --model_checkpoint "$OUT/vae/checkpoint.safetensors" --max_train_steps 8
      --checkpoint_save_interval 4)

# 2. FSDP2 flow stage: trains, saves sharded state + gathered weights, exports a pipeline, resumes
launch accelerate_configs/fsdp.yaml "$NGPU" "$OUT/fsdp" "${FLOW[@]}"
result "FSDP flow stage on $NGPU GPU(s): train, checkpoint, export" $? "$OUT/fsdp.log"
mkdir -p "$OUT/fsdp_resumed/state" && cp -r "$OUT/fsdp/state/checkpoint-4" "$OUT/fsdp_resumed/state/"
launch accelerate_configs/fsdp.yaml "$NGPU" "$OUT/fsdp_resumed" "${FLOW[@]}" --resume_from_checkpoint latest \
  && same_weights "$OUT/fsdp" "$OUT/fsdp_resumed"
result "FSDP resume from checkpoint-4 ends where the straight run ends" $? "$OUT/fsdp_resumed.log"
$PY -c "
from fluxflow import FluxFlowPipeline
pipe = FluxFlowPipeline.from_pretrained('$OUT/fsdp/pipeline').to('cuda')
pipe('a red circle', num_inference_steps=4).images[0].save('$OUT/fsdp_sample.png')" >"$OUT/fsdp_pipe.log" 2>&1
result "the FSDP run's exported pipeline loads and samples" $? "$OUT/fsdp_pipe.log"

# 3. what FSDP refuses, with a message before training
launch accelerate_configs/fsdp.yaml 1 "$OUT/fsdp_vae" --train_vae --max_train_steps 2
grep -q "runs only the flow stage" "$OUT/fsdp_vae.log"
result "FSDP refuses the VAE stage with a clear error" $? "$OUT/fsdp_vae.log"
launch accelerate_configs/fsdp.yaml 1 "$OUT/fsdp_ema" "${FLOW[@]}" --use_ema
grep -q "use_ema is not supported with FSDP" "$OUT/fsdp_ema.log"
result "FSDP refuses --use_ema with a clear error" $? "$OUT/fsdp_ema.log"

# 4. DeepSpeed ZeRO-2 flow stage with EMA (only where deepspeed is installed)
if $PY -c "import deepspeed" 2>/dev/null; then
  launch accelerate_configs/deepspeed_zero2.yaml "$NGPU" "$OUT/zero2" "${FLOW[@]}" --use_ema
  result "DeepSpeed ZeRO-2 flow stage with EMA" $? "$OUT/zero2.log"
else
  echo "SKIP DeepSpeed ZeRO-2 (deepspeed is not installed)"
fi

# 5. DDP on all GPUs (one process when there is one GPU): the parameter sync check runs at the end
launch accelerate_configs/multi_gpu.yaml "$NGPU" "$OUT/ddp" --train_vae --gan_training --max_train_steps 10
result "DDP VAE + GAN on $NGPU GPU(s)" $? "$OUT/ddp.log"

[ "$FAILED" -eq 0 ] && echo "all GPU distributed checks passed" || echo "some GPU distributed checks FAILED"
exit $FAILED
