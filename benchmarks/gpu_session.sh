#!/usr/bin/env bash
# Every GPU figure of README's "Speed" section in one go, on a machine with one NVIDIA GPU:
#   MNIST_MIRROR=<dir with the 4 IDX files> bash benchmarks/gpu_session.sh [results dir [overrides]]
# (the project installed, or its dependencies on PYTHONPATH). Each part has a time limit, so a
# slow part costs its own figures only. The step-level figures without Lightning (README's second
# GPU table) come from `python benchmarks/step_overhead.py --device cuda`, run on its own.
# Overrides after the results dir go to every recipe: `trainer.max_epochs=1` for a quick pass, or
# `trainer.accelerator=cpu` to try the session's commands on a machine without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu-session}}
shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
part() { echo; echo "## $1"; shift; timeout "$@"; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
    lscpu | grep -E 'Model name|^CPU\(s\)'
    python3 -c "from digitpipe.config.precision import cpu_has_bf16; print('CPU bf16 units:', cpu_has_bf16())"
    # the CUDA-graph step's own tests, and a graphed training's records against an eager one's
    part "CUDA tests" 240 python3 -m pytest -q -n0 -p no:cacheprovider tests/unit/test_train_step.py \
        tests/integration/test_train_api.py::test_on_a_gpu_the_graphed_training_records_what_the_eager_one_does
    part "recipes on the GPU (python src/train.py trainer=gpu)" 420 python3 benchmarks/recipes.py \
        --common trainer=gpu "$@" --only-extra \
        --recipe "seed recipe (auto: CUDA graph, 50 steps per batch)=seed=42" \
        --recipe "seed recipe, eager steps (cuda_graph false)=train_step.cuda_graph=false" \
        --recipe "seed recipe, CUDA graph, 1 step per batch=train_step.steps_per_batch=1" \
        --recipe "seed recipe, CUDA graph, 20 steps per batch=train_step.steps_per_batch=20" \
        --recipe "seed recipe, CUDA graph, NCHW=~callbacks.channels_last" \
        --recipe "the fast recipe (auto: eager steps, it has a scheduler)=experiment=fast" \
        --json "$out/gpu_recipes.json"
} 2>&1 | tee "$out/log"
