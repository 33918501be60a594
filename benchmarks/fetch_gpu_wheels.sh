#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_check.sh installs on a GPU machine that cannot reach a package index:
# the reference nnunetv2 2.8.1 and the packages both implementations need that such a machine lacks (its image has
# torch, numpy, scipy, scikit-image, tifffile, matplotlib, pandas, tqdm). SimpleITK (53 MB) is left out so that
# everything fits the 64 MiB that may travel with the working tree; gpu_check.py then works on .tif images and
# gives nnU-Net's module-level `import SimpleITK` a stand-in.
#
#   benchmarks/fetch_gpu_wheels.sh [DEST]            (default DEST: .whl in the repository root, git-ignored)
#   GPU_CHECK_PYTHON_VERSION=3.11 benchmarks/fetch_gpu_wheels.sh /tmp/wheels311   (wheels for another python)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PYV=${GPU_CHECK_PYTHON_VERSION:-3.12}
mkdir -p "$DEST"
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
    platforms="$platforms --platform $p"
done
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp $platforms \
    -d "$DEST" nnunetv2==2.8.1 dynamic-network-architectures==0.4.4 batchgenerators==0.25.5 \
    batchgeneratorsv2==0.3.6 blosc2==4.15.0 ndindex==1.10.1 nibabel==5.4.2 connected-components-3d==4.1.1
# acvl-utils is published as a source archive only; its wheel is pure python, so build it here
python3 -m pip wheel -q --no-deps -w "$DEST" acvl-utils==0.2.6
ls -l "$DEST"
du -ch "$DEST"/*.whl | tail -1
