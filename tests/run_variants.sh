#!/usr/bin/env bash
# nbval on the committed notebook outputs, re-executed under simulated CPUs (README, "Développement").
#   native-2t / native-1t: this CPU, 2 threads / 1 thread (another thread count splits float sums differently);
#   avx2-2t / avx2-1t: PyTorch's vector kernels, MKL's BLAS and oneDNN limited to AVX2, as on a CPU without AVX-512.
# Variants run two at a time, a 2-thread one beside a 1-thread one (then what is left, two at a time), with
# OMP_WAIT_POLICY=PASSIVE: a thread that waits for another sleeps instead of spinning, so three threads share two
# cores without stalling (notebooks 03, 08 and 10: native-2t then avx2-1t took 98 + 146 s, the two together 144 s).
# The policy changes no result: the threads split the work as before.
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
    vars="$vars OMP_WAIT_POLICY=PASSIVE"
    echo "== nbval, variant $variant: $vars"
    env $vars "$python" -m pytest -p tests.notebooks.nbval_figures -p tests.notebooks.nbval_kernel --nbval --nbval-current-env --nbval-sanitize-with tests/notebooks/nbval_sanitize.cfg \
        -p no:cacheprovider "$@"
}

two=() one=()
for variant in "${variants[@]}"; do
    if [[ $variant == *-2t ]]; then two+=("$variant"); else one+=("$variant"); fi
done
groups=()
while [ $((${#two[@]} + ${#one[@]})) -gt 0 ]; do
    if [ ${#two[@]} -gt 0 ]; then group=${two[0]}; two=("${two[@]:1}"); else group=${one[0]}; one=("${one[@]:1}"); fi
    if [ ${#one[@]} -gt 0 ]; then group="$group ${one[0]}"; one=("${one[@]:1}"); fi
    groups+=("$group")
done

failed=()
logs=$(mktemp -d)
for group in "${groups[@]}"; do
    pids=()
    for variant in $group; do
        nbval "$variant" "$@" >"$logs/$variant" 2>&1 &
        pids+=("$!")
    done
    i=0
    for variant in $group; do
        wait "${pids[$i]}" || failed+=("$variant")
        cat "$logs/$variant"
        i=$((i + 1))
    done
done
rm -rf "$logs"
if [ ${#failed[@]} -gt 0 ]; then
    echo "nbval failed under: ${failed[*]}" >&2
    exit 1
fi
