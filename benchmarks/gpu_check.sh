#!/usr/bin/env bash
# The GPU check as one command: install the carried wheels (benchmarks/fetch_gpu_wheels.sh put them in .whl), make
# the reference runnable beside ours, then run benchmarks/gpu_check.py with the given arguments.
#
#   benchmarks/gpu_check.sh [gpu_check.py arguments, e.g. --steps train,predict]
#
# The reference is a package named nnunetv2 too, so it gets a folder of its own and a small launcher that puts it
# first on the path (NNUNET_REFERENCE_PYTHON); the dependencies are shared. Without wheels nothing is installed and
# the environment is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GPU_CHECK_WHEELS:-.whl}
SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
PY=$(command -v "${PYTHON:-python3}")
install() {  # install TARGET WHEEL...
    local target=$1
    shift
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" "$@"
}
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
    deps=()
    reference=()
    for w in "${wheels[@]}"; do
        case "$(basename "$w")" in
            nnunetv2-*) reference+=("$w") ;;
            *) deps+=("$w") ;;
        esac
    done
    [ ${#deps[@]} -gt 0 ] && install "$SITE/deps" "${deps[@]}"
    export PYTHONPATH="$SITE/deps${PYTHONPATH:+:$PYTHONPATH}"
    if [ ${#reference[@]} -gt 0 ] && [ -z "${NNUNET_REFERENCE_PYTHON:-}" ]; then
        install "$SITE/reference" "${reference[@]}"
        cat > "$SITE/reference_python" <<LAUNCHER
#!/bin/sh
PYTHONPATH="$SITE/reference\${PYTHONPATH:+:\$PYTHONPATH}" exec "$PY" "\$@"
LAUNCHER
        chmod +x "$SITE/reference_python"
        export NNUNET_REFERENCE_PYTHON="$SITE/reference_python"
    fi
fi
exec "$PY" benchmarks/gpu_check.py "$@"
