#!/usr/bin/env bash
# Run tests as if on an older x86-64 CPU: torch's kernels, oneDNN's convolutions, MKL, numpy and OpenBLAS are told
# to use only the instructions that CPU has. Floating-point results (probabilities above all) depend on the vector
# width the libraries pick, so this shows on one machine that the golden comparisons hold on other x86 CPUs.
#
#   bash scripts/test_other_cpus.sh                  # the golden comparisons, as AVX2 (e.g. Zen 3) and as SSE4 CPUs
#   bash scripts/test_other_cpus.sh avx2 -- tests    # the whole suite, as an AVX2 CPU
#
# Levels: avx2 (Haswell .. Zen 3), sse4 (x86-64-v2: no AVX at all), native (this CPU, nothing restricted).
set -euo pipefail
cd "$(dirname "$0")/.."

levels=()
while [[ $# -gt 0 && "$1" != "--" ]]; do levels+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
[[ ${#levels[@]} -eq 0 ]] && levels=(avx2 sse4)
if [[ $# -gt 0 ]]; then
    tests=("$@")
else
    tests=(tests/inference/test_golden_models.py tests/inference/test_cpu_fast_mode.py tests/inference/test_cascade.py
           tests/preprocessing/test_preprocessor_conformance.py tests/preprocessing/test_cubic_rounding.py
           tests/experiment_planning/test_fingerprint_golden.py tests/experiment_planning/test_planners_conformance.py
           tests/imageio/test_conformance_golden.py tests/ensembling/test_ensemble.py tests/clients)
fi

# numpy's names for its optional instruction sets changed (AVX512F.. up to 2.3, X86_V3/X86_V4 from 2.4): ask it
numpy_features_above() {
    python3 - "$1" <<'PY'
import sys
try:
    from numpy._core import _multiarray_umath
except ImportError:  # numpy < 2
    from numpy.core import _multiarray_umath
dispatch = _multiarray_umath.__cpu_dispatch__
avx = {"AVX", "F16C", "FMA3", "AVX2", "X86_V3"}
above = [f for f in dispatch if f.startswith("AVX512") or f == "X86_V4" or (sys.argv[1] == "sse4" and f in avx)]
print(" ".join(above))
PY
}

status=0
for level in "${levels[@]}"; do
    case "$level" in
        avx2) restrict=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
                        "NPY_DISABLE_CPU_FEATURES=$(numpy_features_above avx2)" OPENBLAS_CORETYPE=Haswell) ;;
        sse4) restrict=(ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
                        "NPY_DISABLE_CPU_FEATURES=$(numpy_features_above sse4)" OPENBLAS_CORETYPE=Nehalem) ;;
        native) restrict=() ;;
        *) echo "unknown level '$level': use avx2, sse4 or native" >&2; exit 2 ;;
    esac
    echo "== $level: torch uses $(env "${restrict[@]}" python3 -c \
        'import torch; print(torch.backends.cpu.get_cpu_capability())' 2>/dev/null)"
    env "${restrict[@]}" python3 -m pytest -q "${tests[@]}" || status=1
done
exit $status
