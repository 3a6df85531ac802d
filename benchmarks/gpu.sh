#!/usr/bin/env bash
# The GPU run, in one call of at most 10 minutes: the fused kernels' and
# the layer's tests on the GPU (PyTorch), then the papers' kernel
# comparison at the layer level (`layer_level.py`) and the Keras training
# step (`measure.py --gpu`), on PyTorch and JAX. Writes six files into
# $OUT (default benchmarks/results): gpu.txt (the card), gpu-tests.log,
# layer-level.json, gpu-torch.json, gpu-jax.json and gpu-benchmarks.log.
# Needs Keras, PyTorch with CUDA (and Triton) and JAX with CUDA. Each step
# has a time limit, so that one slow step cannot take the others' time;
# the limits add up to 570 s.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
MODELS=indrnn_sequential,indrnn_torchscript,indrnn_parallel,lstm,dense_floor
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
    | tee "$OUT/gpu.txt"
{
    # The fused Triton kernels, compiled for this GPU.
    # Triton compiles each kernel specialization on first use.
    env -u TRITON_INTERPRET KERAS_BACKEND=torch timeout 120 python3 -m pytest \
        -q -p no:cacheprovider tests/engines/test_triton_kernels.py 2>&1 \
        | tail -n 30
    echo "exit status ${PIPESTATUS[0]} (124: stopped at its time limit)"
    # The layer against the float64 reference, with the Triton kernels.
    KERAS_BACKEND=torch timeout 70 python3 -m pytest -x -q \
        -p no:cacheprovider tests/test_layer.py tests/test_layer_gradients.py \
        -k "reference or finite or stateful" 2>&1 | tail -n 30
    echo "exit status ${PIPESTATUS[0]} (124: stopped at its time limit)"
} | tee "$OUT/gpu-tests.log"
{
    # One layer's forward and backward alone, against cuDNN LSTM and the
    # dense floor; each engine's worker stops at 55 s with what it has.
    timeout 120 python3 benchmarks/layer_level.py --backends torch,jax \
        --timeout 55 --repeats 5 --output "$OUT/layer-level.json" 2>&1
    # The Keras training and inference steps.
    for backend in torch jax; do
        models=$MODELS
        [ "$backend" = jax ] && models=${MODELS/indrnn_torchscript,/}
        timeout 130 python3 benchmarks/measure.py --gpu --no-memory \
            --backends "$backend" --models "$models" --repeats 5 \
            --output "$OUT/gpu-$backend.json" 2>&1
    done
} | tee "$OUT/gpu-benchmarks.log"
