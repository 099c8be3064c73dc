#!/usr/bin/env bash
# nbval on the committed notebook outputs, re-executed under simulated CPUs (README, "Développement").
#   native-2t / native-1t: this CPU, 2 threads / 1 thread (another thread count splits float sums differently);
#   avx2-2t / avx2-1t: PyTorch's vector kernels, MKL's BLAS and oneDNN limited to AVX2, as on a CPU without AVX-512.
# usage: tests/run_variants.sh PYTHON NOTEBOOK...   (VARIANTS="native-2t avx2-1t" runs a subset)
set -uo pipefail
python=$1
shift
avx2=(ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2)
failed=()
for variant in ${VARIANTS:-native-2t native-1t avx2-2t avx2-1t}; do
    case $variant in
        native-2t) vars=(OMP_NUM_THREADS=2) ;;
        native-1t) vars=(OMP_NUM_THREADS=1) ;;
        avx2-2t) vars=(OMP_NUM_THREADS=2 "${avx2[@]}") ;;
        avx2-1t) vars=(OMP_NUM_THREADS=1 "${avx2[@]}") ;;
        *) echo "unknown variant '$variant': expected native-2t, native-1t, avx2-2t or avx2-1t" >&2; exit 2 ;;
    esac
    echo "== nbval, variant $variant: ${vars[*]}"
    env "${vars[@]}" "$python" -m pytest -p tests.nbval_figures --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
        -p no:cacheprovider "$@" || failed+=("$variant")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "nbval failed under: ${failed[*]}" >&2
    exit 1
fi
