#!/usr/bin/env bash
# GPU benchmarks on the JAX backend, for a machine with an NVIDIA GPU and JAX (CUDA) but no
# TensorFlow: `resnet/` and `tuning.bench` need only Keras there. Writes JSON into $1 (default .).
# Keras and its small dependencies can come as wheels in .whl/ (installed into /tmp/site).
set -uo pipefail
out=${1:-.}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" || exit 1
t0=$SECONDS
python3 -W ignore -m tuning.bench throughput --batch 128 --steps 30 --repeats 3 --jit --with-v1 \
  --precision float32 --out "$out/throughput-float32.json"
echo "[throughput float32: $((SECONDS - t0)) s]"; t0=$SECONDS
python3 -W ignore -m tuning.bench throughput --batch 128 --steps 30 --repeats 3 --jit --with-v1 \
  --precision mixed --out "$out/throughput-mixed.json"
echo "[throughput mixed: $((SECONDS - t0)) s]"; t0=$SECONDS
# With XLA a whole epoch (352 steps); without (JAX eager, one operation at a time) fewer steps.
python3 -W ignore -m tuning.bench epoch --batch 128 --precision float32 --precision mixed --jit on \
  --out "$out/epoch-xla.json"
python3 -W ignore -m tuning.bench epoch --batch 128 --steps 100 --precision float32 --jit off \
  --out "$out/epoch-float32-eager.json"
python3 -W ignore -m tuning.bench epoch --batch 128 --steps 10 --precision mixed --jit off \
  --out "$out/epoch-mixed-eager.json"
echo "[epoch: $((SECONDS - t0)) s]"
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv
