#!/usr/bin/env bash
# nbval on the committed notebook outputs, re-executed under simulated CPUs (README, "Développement").
#   native-2t / native-1t: this CPU, 2 threads / 1 thread (another thread count splits float sums differently);
#   avx2-2t / avx2-1t: PyTorch's vector kernels, MKL's BLAS and oneDNN limited to AVX2, as on a CPU without AVX-512.
# The 2-thread variants run one after the other, then the 1-thread ones side by side (one core each).
# usage: tests/run_variants.sh PYTHON NOTEBOOK...   (VARIANTS="native-2t avx2-1t" runs a subset)
set -uo pipefail
python=$1
shift
variants=(${VARIANTS:-native-2t avx2-2t native-1t avx2-1t})
avx2="ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
for variant in "${variants[@]}"; do
    case $variant in
        native-2t | native-1t | avx2-2t | avx2-1t) ;;
        *) echo "unknown variant '$variant': expected native-2t, native-1t, avx2-2t or avx2-1t" >&2; exit 2 ;;
    esac
done

nbval() {  # nbval VARIANT NOTEBOOK...
    local variant=$1 vars="OMP_NUM_THREADS=${1##*-}"
    shift
    vars=${vars%t}
    [[ $variant == avx2-* ]] && vars="$vars $avx2"
    echo "== nbval, variant $variant: $vars"
    env $vars "$python" -m pytest -p tests.notebooks.nbval_figures -p tests.notebooks.nbval_kernel --nbval --nbval-current-env --nbval-sanitize-with tests/notebooks/nbval_sanitize.cfg \
        -p no:cacheprovider "$@"
}

failed=()
for variant in "${variants[@]}"; do
    [[ $variant == *-2t ]] && { nbval "$variant" "$@" || failed+=("$variant"); }
done
logs=$(mktemp -d)
pids=()
for variant in "${variants[@]}"; do
    if [[ $variant == *-1t ]]; then
        nbval "$variant" "$@" >"$logs/$variant" 2>&1 &
        pids+=("$!")
    fi
done
i=0
for variant in "${variants[@]}"; do
    if [[ $variant == *-1t ]]; then
        wait "${pids[$i]}" || failed+=("$variant")
        cat "$logs/$variant"
        i=$((i + 1))
    fi
done
rm -rf "$logs"
if [ ${#failed[@]} -gt 0 ]; then
    echo "nbval failed under: ${failed[*]}" >&2
    exit 1
fi
