#!/usr/bin/env bash
# Build benchmarks/.venv-legacy: the EARLIER FluxFlow release (PyPI `fluxflow`, default 0.5.0, the parity
# target of docs/reference notes) in its own virtual environment, for benchmarks/peers.py.
#
#   bash benchmarks/setup_legacy.sh                   # fluxflow==0.5.0
#   FLUXFLOW_LEGACY_VERSION=0.8.1 bash benchmarks/setup_legacy.sh
#
# What is installed, and why only this:
#   - the SAME CPU torch as the main venv (torch==2.13.0): the local wheel when pip has one (--no-index), else
#     the PyTorch CPU index; never a CUDA build. On a machine with a GPU set TORCH_SPEC/TORCH_INDEX as needed.
#   - torch's own pure-Python requirements, read from the installed torch's metadata (CUDA/triton ones skipped);
#   - `fluxflow==<version>` with --no-deps, plus einops: the only third-party import of the release's
#     model modules (models/vae.py, flow.py, activations.py, conditioning.py, bezier_*.py) besides torch.
#     The package's __init__ files also import pydantic, yaml, diffusers and transformers (and
#     fluxflow.utils imports torchvision); the benchmark driver (benchmarks/legacy_driver.py) loads the model
#     modules without running those __init__ files, so none of that is installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LEGACY_VENV:-$HERE/.venv-legacy}"
VERSION="${FLUXFLOW_LEGACY_VERSION:-0.5.0}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

"$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/pip"

# 1. torch, without its dependencies (so no CUDA wheels can be pulled in)
"$PIP" install --no-deps --no-index "$TORCH_SPEC" 2>/dev/null ||
    "$PIP" install --no-deps "$TORCH_SPEC" --index-url "$TORCH_INDEX"

# 2. torch's pure-Python requirements (filelock, sympy, ...), skipping nvidia-*/triton/cuda-* ones
REQS="$("$VENV/bin/python" - <<'EOF'
import re
from importlib.metadata import requires
out = []
for req in requires("torch") or []:
    if "extra ==" in req:
        continue
    spec = req.split(";")[0].strip()
    name = re.split(r"[<>=!~ \[(]", spec, maxsplit=1)[0].lower()
    if name.startswith(("nvidia", "triton", "cuda")):
        continue
    out.append(spec.replace(" ", ""))
print(" ".join(out))
EOF
)"
if [ -n "$REQS" ]; then
    # shellcheck disable=SC2086
    "$PIP" install $REQS
fi

# 3. the earlier release itself, plus the light imports of its model modules
"$PIP" install --no-deps "fluxflow==$VERSION"
"$PIP" install einops

"$VENV/bin/python" "$HERE/legacy_driver.py" --check
echo "legacy venv ready: $VENV (fluxflow==$VERSION)"
