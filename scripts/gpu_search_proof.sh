#!/usr/bin/env bash
# The search on an NVIDIA GPU with the JAX backend, on a machine that has JAX with CUDA and no
# TensorFlow. Prepare the wheels it may lack here with scripts/gpu_wheels.sh (into .whl/), then
# on the GPU machine, from the repository root:
#
#     bash scripts/gpu_search_proof.sh OUT        # device tool: carry [".whl"], OUT=$OUT
#
# 1. --space cifar --dataset digits --image-size 32, the space's full default budget;
# 2. the same space on a generated 32x32, 10-class folder of 50,000 PNG images, max_epochs 9.
# Each is cut at its time limit (DIGITS_LIMIT, SYNTH_LIMIT seconds; a cut run's figures are over
# the trials done). GPU utilisation is sampled every 0.5 s with nvidia-smi. Writes into OUT:
# search-*.log, util-*.csv and figures-*.json (scripts/gpu_figures.py: wall time, trials,
# trials per hour, best accuracy, training and compile shares of wall, GPU utilisation).
set -uo pipefail
out=${1:-gpu-proof}
work=${WORK:-/tmp/gpu-proof}
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
if compgen -G ".whl/*.whl" >/dev/null; then  # install only what this machine lacks
  python3 - <<'PY' || exit 1
import importlib.util, pathlib, subprocess, sys
modules = {"keras": "keras", "keras_tuner": "keras_tuner", "kt_legacy": "kt_legacy", "tensorboard": "tensorboard",
           "namex": "namex", "optree": "optree", "rich": "rich", "markdown_it_py": "markdown_it", "mdurl": "mdurl",
           "pygments": "pygments", "h5py": "h5py", "absl_py": "absl", "six": "six", "protobuf": "google.protobuf",
           "packaging": "packaging", "scikit_learn": "sklearn", "joblib": "joblib", "threadpoolctl": "threadpoolctl",
           "pillow": "PIL", "markdown": "markdown", "werkzeug": "werkzeug", "markupsafe": "markupsafe",
           "matplotlib": "matplotlib", "contourpy": "contourpy", "cycler": "cycler", "fonttools": "fontTools",
           "kiwisolver": "kiwisolver", "pyparsing": "pyparsing", "python_dateutil": "dateutil", "psutil": "psutil"}
def present(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
wheels = [w for w in pathlib.Path(".whl").glob("*.whl")
          if not present(modules.get(w.name.split("-")[0].lower(), w.name.split("-")[0]))]
print("installing", ", ".join(w.name.split("-")[0] for w in wheels) or "nothing")
if wheels:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", "/tmp/site", *map(str, wheels)], check=True)
PY
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import jax, keras, keras_tuner; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" \
  | tee -a "$out/gpu.txt" || exit 1
python3 -c "import tensorflow" 2>/dev/null && echo "note: TensorFlow is importable here" | tee -a "$out/gpu.txt"

search() {  # NAME LIMIT ARGS...: one search, GPU utilisation sampled while it runs
  local name=$1 limit=$2; shift 2
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    > "$out/util-$name.csv" &
  local sampler=$!
  timeout --signal=INT --kill-after=60 "$limit" python3 -m tuning.search --space cifar --backend jax \
    --results-dir "$work/results" --name "$name" "$@" 2>&1 | tee "$out/search-$name.log"
  kill "$sampler" 2>/dev/null
  python3 scripts/gpu_figures.py "$work/results/$name" "$out/util-$name.csv" --json "$out/figures-$name.json"
}

t0=$SECONDS
search digits "${DIGITS_LIMIT:-300}" --dataset digits --image-size 32 ${DIGITS_ARGS:-}
echo "[digits search: $((SECONDS - t0)) s]"
t0=$SECONDS
python3 scripts/make_synthetic_images.py "$work/synthetic" --images "${SYNTH_IMAGES:-50000}" --size 32 --classes 10
echo "[50,000 images written: $((SECONDS - t0)) s]"
t0=$SECONDS
search synthetic "${SYNTH_LIMIT:-240}" --dataset "$work/synthetic" --image-size 32 --max-epochs 9 ${SYNTH_ARGS:-}
echo "[synthetic search: $((SECONDS - t0)) s]"
