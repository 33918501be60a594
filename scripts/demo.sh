#!/usr/bin/env bash
# The quick-start demo: generates a small 3D dataset and trains, predicts and evaluates on it with the real
# nnUNetv2_* commands (CPU, under a minute on 2 cores). Everything goes to ./demo_output (replaced on each run);
# it ends with the test-set Dice per label, the time per step and the pictures to open.
# Options: --output FOLDER, and --epochs/--iterations/--num_train/--num_test (smaller: faster, less accurate).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m nnunetv2.demo.run_demo --output demo_output "$@"
