#!/usr/bin/env bash
# Wheels that scripts/gpu_search_proof.sh installs on a GPU machine that has JAX with CUDA but
# not this package's other dependencies (and no network): downloaded here into .whl/, which the
# device tool carries (`carry: [".whl"]`, at most 64 MiB with the working tree). Only what such
# a machine lacked is needed; the proof script installs a wheel only when its module is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
py=${PYTHON:-.venv/bin/python}
# Pure-Python wheels and manylinux x86-64 wheels for CPython 3.11 (the GPU machine's Python; set
# PY_VERSION to another one if it differs).
$py -m pip download -q -c constraints.txt --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.11}" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --platform any -d .whl \
  keras keras-tuner kt-legacy tensorboard namex optree rich markdown-it-py mdurl pygments h5py \
  absl-py six protobuf packaging scikit-learn joblib threadpoolctl pillow markdown werkzeug markupsafe \
  matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil psutil
du -sh .whl
ls .whl
