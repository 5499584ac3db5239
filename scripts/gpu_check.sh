#!/usr/bin/env bash
# The GPU check of issue 13 (item 6): ResNet-50 ERM images/s in float32 and bf16, the framework's step
# against ERM's, a screened unit scan over 1,000 images and, with two GPUs, a torchrun DDP smoke step,
# on synthetic Waterbirds-size 224-px data. Installs nothing and downloads nothing: it runs on the
# python (and torch) it finds: $PYTHON, else python, else python3. Under 10 minutes on one GPU.
# Writes the table to $OUT/gpu_check.md when $OUT is set, else ./gpu_check.md (or --out FILE).
#   scripts/gpu_check.sh                 # or: make gpu-check
#   PYTHON=/opt/venv/bin/python scripts/gpu_check.sh --scan-units 64
#   scripts/gpu_check.sh --smoke --device cpu   # the tiny CPU path the tests run
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$(command -v python || command -v python3 || true)}"
if [ -z "$python" ]; then
    echo "gpu_check: no python found; set PYTHON=/path/to/python (one with torch)" >&2
    exit 2
fi
if ! "$python" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('torch') and u.find_spec('torchvision')))" 2>/dev/null; then
    echo "gpu_check: $python cannot import torch and torchvision; set PYTHON to an interpreter that has them" >&2
    exit 2
fi
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
limit="${GPU_CHECK_TIMEOUT:-600}"
if command -v timeout >/dev/null 2>&1; then
    exec timeout "$limit" "$python" "$here/benchmarks/gpu_check.py" "$@"
fi
exec "$python" "$here/benchmarks/gpu_check.py" "$@"
