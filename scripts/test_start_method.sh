#!/usr/bin/env bash
# Run tests with another default multiprocessing start method, set in every Python process the tests start (a
# sitecustomize module on PYTHONPATH). Python 3.14 makes forkserver the default on Linux (macOS and Windows: spawn);
# code that starts processes without naming a method, ours or a user's trainer, then runs that way.
#
#   bash scripts/test_start_method.sh                        # the whole suite, forkserver as the default
#   bash scripts/test_start_method.sh spawn -- tests/run     # some tests, spawn as the default
set -euo pipefail
cd "$(dirname "$0")/.."

method=forkserver
if [[ $# -gt 0 && "$1" != "--" ]]; then method=$1; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
[[ $# -eq 0 ]] && set -- tests

site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
cat > "$site/sitecustomize.py" <<PY
import multiprocessing
try:
    multiprocessing.set_start_method("$method")
except RuntimeError:  # already set in this process
    pass
PY
# the check that it took: a child Python reports its default
got=$(PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" python3 -c "import multiprocessing as m; print(m.get_start_method())")
[[ "$got" == "$method" ]] || { echo "could not make $method the default (got $got)" >&2; exit 1; }
echo "default start method: $got" >&2
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -q "$@"
