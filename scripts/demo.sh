#!/usr/bin/env bash
# Runs the quick-start demo on a small generated dataset (CPU, a few minutes). Output: ./demo_output
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m nnunetv2.demo.run_demo --output demo_output "$@"
