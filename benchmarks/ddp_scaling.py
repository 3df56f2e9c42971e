"""DDP scaling: time per epoch of the real CLI with 1 process vs N, and which DDP settings help.

    python benchmarks/ddp_scaling.py                    # CPU: 1 process vs 2 (trainer=ddp_cpu)
    python benchmarks/ddp_scaling.py --gpus 8           # GPU: 1 vs 8 (trainer=gpu vs trainer=ddp)
    python benchmarks/ddp_scaling.py --only "plain DDP" data.batch_size=128   # the baseline and one

Every variant trains the same epochs on the same data (data/processed/mnist.pt; run `dvc repro
preprocess` first) and writes its outputs and MLflow run to a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from train_cli import train_cli

PLAIN_DDP = ["trainer.strategy.static_graph=false", "trainer.strategy.gradient_as_bucket_view=false"]


def variants(gpus: int) -> list[tuple[str, int, list[str]]]:
    """(label, processes, overrides) for each measured setting."""
    if gpus:
        many = ["trainer=ddp", f"trainer.devices={gpus}"]
        return [
            ("1 GPU", 1, ["trainer=gpu"]),
            (f"{gpus} GPUs, global batch (64/{gpus} per GPU)", gpus, many),
            (f"{gpus} GPUs, 64 per GPU", gpus, [*many, "distributed.batch_scope=per_device"]),
        ]
    return [
        ("1 process, 2 threads", 1, ["trainer=cpu"]),
        ("2 processes, global batch 64 (32 each), static graph", 2, ["trainer=ddp_cpu"]),
        ("2 processes, global batch 64, plain DDP settings", 2, ["trainer=ddp_cpu", *PLAIN_DDP]),
        ("2 processes, 64 each (global 128)", 2, ["trainer=ddp_cpu", "distributed.batch_scope=per_device"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=0, help="measure 1 vs this many GPUs instead of CPU")
    parser.add_argument("--only", help="besides the first setting (the baseline), those whose label has this")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every setting")
    args = parser.parse_args()
    first, *others = variants(args.gpus)
    chosen = [first, *(v for v in others if args.only is None or args.only in v[0])]
    baseline, epochs = None, f"trainer.max_epochs={args.epochs}"
    print(f"{'setting':<55} {'s/epoch':>8} {'speedup':>8} {'efficiency':>10} {'val/acc':>8}")
    for label, processes, overrides in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            result = train_cli([*overrides, *args.overrides, epochs], Path(tmp), "ddp-scaling")
        epoch_s = result["fit_s"] / result["epochs"]
        baseline = baseline or epoch_s
        speedup = baseline / epoch_s
        print(f"{label:<55} {epoch_s:8.2f} {speedup:8.2f} {speedup / processes:10.0%} "
              f"{result['val_acc']:8.4f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
