"""The seed's Keras code vs a plain PyTorch loop vs the pipeline, alternated on one machine.

    pip install -e ".[bench]"                      # TensorFlow (CPU) for the seed's own code
    python benchmarks/vs_keras.py                   # 5 epochs each, 2 rounds
    python benchmarks/vs_keras.py --epochs 1 --rounds 1 -- trainer.precision=32-true
    python benchmarks/vs_keras.py --no-keras        # without TensorFlow: the plain loop vs the pipeline

Each run is a fresh process, in the order keras, plain, pipeline, keras, ... so that a machine
that drifts (these do, up to 2x) drifts for all three. Keras fits the seed's 60,000 images (no
validation); the plain loop and the pipeline fit 55,000 and the pipeline also validates on 5,000
each epoch and keeps the best checkpoint. Every run reports test accuracy on the 10,000 test images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from train_cli import ROOT, train_cli


def keras_run(epochs: int, mirror: Path) -> dict:
    script = [sys.executable, str(ROOT / "benchmarks" / "seed_keras.py"), "--mirror", str(mirror)]
    done = subprocess.run([*script, "--epochs", str(epochs)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the seed's Keras code failed (pip install -e '.[bench]'?):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"fit_s": result["fit_s"], "epoch_s": statistics.median(result["epoch_s"]),
            "test_acc": result["test_acc"], "steps": epochs * result["steps_per_epoch"]}  # fmt: skip


def plain_run(epochs: int, overrides: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--plain-child", "--epochs", str(epochs), "--", *overrides],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"the plain loop failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plain_child(epochs: int, overrides: list[str]) -> None:
    """In a fresh process: the plain loop for `epochs`, then test accuracy; one JSON line."""
    import torch
    from epoch_time import loaded_datamodule, plain_fit
    from hydra import compose, initialize_config_dir

    from digitpipe.cli import VERSION_BASE
    from digitpipe.data.datamodule import scale_images

    with initialize_config_dir(str(ROOT / "conf"), version_base=VERSION_BASE):
        cfg = compose("config", overrides=overrides)
    datamodule = loaded_datamodule(cfg)
    datamodule.setup("test")
    seconds, model = plain_fit(cfg, datamodule, epochs)
    test = datamodule.splits["test"]
    with torch.inference_mode():
        predicted = model.eval()(scale_images(test.images)).argmax(dim=1)
    steps = epochs * -(-len(datamodule.splits["train"]) // cfg.data.batch_size)
    accuracy = (predicted == test.labels).float().mean().item()
    print(json.dumps({"fit_s": seconds, "epoch_s": seconds / epochs, "test_acc": accuracy, "steps": steps}))


def pipeline_run(epochs: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = train_cli([*overrides, f"trainer.max_epochs={epochs}"], Path(tmp), "vs-keras")
    return {**result, "epoch_s": result["fit_s"] / epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    mirror = os.environ.get("MNIST_MIRROR", ROOT.parent / "shared/datasets/mnist")
    parser.add_argument("--mirror", type=Path, default=Path(mirror), help="MNIST's IDX files, for Keras")
    parser.add_argument("--no-keras", action="store_true", help="leave Keras out: ratios to the plain loop")
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the plain loop and the pipeline")
    args = parser.parse_args()
    if args.plain_child:
        return plain_child(args.epochs, args.overrides)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {args.epochs} epochs x "
          f"{args.rounds} rounds; overrides: {' '.join(args.overrides) or '(none)'}", flush=True)  # fmt: skip
    runners = {
        "the seed's Keras code": lambda: keras_run(args.epochs, args.mirror),
        "plain PyTorch loop": lambda: plain_run(args.epochs, args.overrides),
        "python src/train.py": lambda: pipeline_run(args.epochs, args.overrides),
    }
    if args.no_keras:
        del runners["the seed's Keras code"]
    results: dict[str, list[dict]] = {name: [] for name in runners}
    for round_ in range(args.rounds):
        for name, runner in runners.items():
            results[name].append(runner())
            fit, acc = results[name][-1]["fit_s"], results[name][-1]["test_acc"]
            print(f"round {round_ + 1}: {name:<22} fit {fit:7.1f} s  test acc {acc:.4f}", flush=True)
    first_fit = statistics.median(r["fit_s"] for r in next(iter(results.values())))
    versus = "plain" if args.no_keras else "Keras"
    print(f"\n| run | fit, {args.epochs} epochs (median) | s/epoch | ms/step | vs {versus} | test acc |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        fit = statistics.median(r["fit_s"] for r in runs)
        epoch = statistics.median(r["epoch_s"] for r in runs)
        ms = statistics.median(1000 * r["fit_s"] / r["steps"] for r in runs)
        accs = ", ".join(f"{r['test_acc']:.4f}" for r in runs)
        print(f"| {name} | {fit:.1f} s | {epoch:.1f} | {ms:.1f} | {fit / first_fit:.2f}x | {accs} |")


if __name__ == "__main__":
    main()
