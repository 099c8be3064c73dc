#!/usr/bin/env bash
# One training stage on a lent GPU machine (issue 30: the Othello-GPT stages), in one call of the device tool:
#   bash training/gpu_stage.sh STAGE [MINUTES]      (from the repository root; MINUTES defaults to 8)
# STAGE is a SPECS entry with device="cuda" (training/train.py), written before the call. The stage trains for at
# most MINUTES and, when it ends, ships as usual if it beats the shipped weights (training.ship). What comes back
# under $OUT: train.log; if the stage shipped, the model's files in data/models (copy them back into the same
# folders); if it stopped before its end, its state.pt in pieces of 15 MiB (the device tool brings back files of at
# most 16 MiB): `mkdir -p ~/course-runs/STAGE && cat state.pt.part-* > ~/course-runs/STAGE/state.pt` here, then resume
# with `python -m training.train STAGE --device cuda` (or cpu) on any machine.
# The GPU machine's python3 has torch, numpy, einops, jaxtyping, safetensors and tqdm, all that training needs.
# DEVICE=cpu runs the same steps without a GPU (to try the script).
set -uo pipefail
stage=${1:?usage: bash training/gpu_stage.sh STAGE [MINUTES]}
minutes=${2:-8}
python=${PYTHON:-python3}
out=${OUT:-/tmp/gpu-stage-out}
export COURSE_RUNS_DIR=${COURSE_RUNS_DIR:-/tmp/course-runs} PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())"
marker=$(mktemp)  # the files of data/models written after it are the stage's (the copy there may have no .git)
"$python" -m training.train "$stage" --device "${DEVICE:-cuda}" --max-minutes "$minutes" 2>&1 | tee "$out/train.log"
status=${PIPESTATUS[0]}
changed=$(find data/models -type f -newer "$marker")
if [ -n "$changed" ]; then
    for file in $changed; do cp "$file" "$out/$(basename "$file")"; done
    echo "shipped: under \$OUT by their base names (remove the older step_*.safetensors here):" $changed
elif [ -f "$COURSE_RUNS_DIR/$stage/state.pt" ] && [ ! -f "$COURSE_RUNS_DIR/$stage/exported.json" ]; then
    split -b 15M -d "$COURSE_RUNS_DIR/$stage/state.pt" "$out/state.pt.part-"
    echo "stopped before its end: state.pt in $(ls "$out"/state.pt.part-* | wc -l) pieces under \$OUT"
fi
exit "$status"
