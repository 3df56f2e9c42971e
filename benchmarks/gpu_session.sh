#!/usr/bin/env bash
# Every GPU figure of README's "Speed" section in one go, on a machine with one NVIDIA GPU:
#   MNIST_MIRROR=<dir with the 4 IDX files> bash benchmarks/gpu_session.sh [results dir]
# (the project installed, or its dependencies on PYTHONPATH). Each part has a time limit, so a
# slow part costs its own figures only.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu-session}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
part() { echo; echo "## $1"; shift; timeout "$@"; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
    lscpu | grep -E 'Model name|^CPU\(s\)'
    python3 -c "from digitpipe.training.precision import cpu_has_bf16; print('CPU bf16 units:', cpu_has_bf16())"
    part "recipes on the GPU (python src/train.py trainer=gpu)" 300 python3 benchmarks/recipes.py \
        --common trainer=gpu --recipe "seed recipe, 32-true=trainer.precision=32-true" \
        --recipe "seed recipe, 32-true, NCHW=trainer.precision=32-true,~callbacks.channels_last" \
        --json "$out/gpu_recipes.json"
    # the whole-step CUDA graph in a process of its own: after the reduce-overhead variant's graphs
    # in the same process it once failed with an illegal memory access
    part "one training step without Lightning" 120 python3 benchmarks/step_overhead.py --device cuda --steps 300 --skip "whole step"
    part "the whole step as one CUDA graph" 60 python3 benchmarks/step_overhead.py --device cuda --steps 300 --only "whole step"
    part "the seed recipe on 2 of this machine's CPU cores" 120 env OMP_NUM_THREADS=2 taskset -c 0,1 python3 benchmarks/recipes.py \
        --only-extra --recipe "seed recipe=trainer.devices=1" --json "$out/cpu_recipes.json"
} 2>&1 | tee "$out/log"
