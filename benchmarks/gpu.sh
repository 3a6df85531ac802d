#!/usr/bin/env bash
# The GPU run: the layer's tests on the GPU (PyTorch), then the papers'
# speed comparison (`measure.py --gpu`) on PyTorch and JAX. Writes into
# $OUT (default benchmarks/results): gpu.txt (the card), gpu-tests.log,
# gpu-<backend>.json and .log. Needs Keras, PyTorch with CUDA and JAX with
# CUDA; each step has a time limit so that one slow step cannot take the
# others' time.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
MODELS=indrnn_sequential,indrnn_parallel,indrnn_cell_rnn,lstm,dense_floor
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
    | tee "$OUT/gpu.txt"
KERAS_BACKEND=torch timeout 100 python3 -m pytest -x -q -p no:cacheprovider \
    tests/test_layer.py tests/test_layer_gradients.py \
    -k "reference or finite or stateful" 2>&1 | tail -n 30 \
    | tee "$OUT/gpu-tests.log"
for backend in torch jax; do
    timeout 210 python3 benchmarks/measure.py --gpu --no-memory \
        --backends "$backend" --models "$MODELS" --repeats 5 \
        --output "$OUT/gpu-$backend.json" 2>&1 | tee "$OUT/gpu-$backend.log"
done
