"""One training epoch of the seed recipe: a plain PyTorch loop vs the pipeline's Lightning module.

    python benchmarks/epoch_time.py                 # real data (data/processed/mnist.pt)
    python benchmarks/epoch_time.py --repeats 3     # alternate the two paths, report medians

Both paths see the same data, batch size, model, optimizer and thread count, in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from digitpipe.data.datamodule import scale_images
from digitpipe.paths import workspace_root
from digitpipe.training.train import build_datamodule, build_model


def plain_epoch(cfg, datamodule) -> float:
    """The reference: the loop anyone would write by hand around the same tensors."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).net
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    train = datamodule.splits["train"]
    started = time.perf_counter()
    model.train()
    for index in torch.randperm(len(train)).split(cfg.data.batch_size):
        images, labels = scale_images(train.images[index], None, None), train.labels[index]
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def lightning_epoch(cfg, datamodule) -> float:
    """The pipeline's path: DigitClassifier + DigitsDataModule under lightning.Trainer."""
    L.seed_everything(cfg.seed, verbose=False)
    trainer = L.Trainer(
        **{**cfg.trainer, "max_epochs": 1}, logger=False, enable_checkpointing=False,
        enable_model_summary=False, limit_val_batches=0, enable_progress_bar=True,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(build_model(cfg), datamodule=datamodule)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.batch_size=128")
    args = parser.parse_args()
    with initialize_config_dir(str(workspace_root() / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{len(datamodule.splits['train'])} images, batch {cfg.data.batch_size}"
    )
    plain, lightning = [], []
    for _ in range(args.repeats):
        plain.append(plain_epoch(cfg, datamodule))
        lightning.append(lightning_epoch(cfg, datamodule))
    p, lt = statistics.median(plain), statistics.median(lightning)
    print(f"plain PyTorch loop: {p:.2f} s/epoch  (runs: {', '.join(f'{t:.2f}' for t in plain)})")
    print(f"Lightning module:   {lt:.2f} s/epoch  (runs: {', '.join(f'{t:.2f}' for t in lightning)})")
    print(f"ratio Lightning / plain: {lt / p:.3f}")


if __name__ == "__main__":
    main()
