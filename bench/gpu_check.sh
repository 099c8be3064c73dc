#!/usr/bin/env bash
# Issue 33, item 6: the checks that need a GPU, in one short run on a lent GPU machine (about 5 minutes):
# the GPU tests (model, loading, half precision, patching, generation, device_map; tests/unit/test_cuda.py), then
# the bench's forward and generate items on cuda. Usage, from the repository root: bash bench/gpu_check.sh
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
"$PY" -m pytest -q tests/unit/test_cuda.py
"$PY" -m bench --device cuda --only forward,generate
