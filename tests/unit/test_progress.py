"""Progress output: the bar on a terminal, one line per epoch in a log."""

from __future__ import annotations

import io

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, TensorDataset

from digitpipe.training.progress import EpochLines, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar_a_log_gets_lines_and_zero_means_no_output():
    assert isinstance(progress_bar(20, Terminal()), TQDMProgressBar)
    assert isinstance(progress_bar(20, io.StringIO()), EpochLines)
    quiet = progress_bar(0, io.StringIO())
    assert isinstance(quiet, TQDMProgressBar) and quiet.refresh_rate == 0


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        return loss

    def on_train_epoch_end(self) -> None:  # logged by the module after the callbacks' hook, as ours
        self.log("train/acc", 0.5 + self.current_epoch / 10)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_log_gets_one_complete_line_per_epoch_and_no_carriage_return(capsys):
    data = DataLoader(TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,))), batch_size=8)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        callbacks=[EpochLines()])  # fmt: skip
    trainer.fit(Tiny(), train_dataloaders=data)
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    assert [line.split(" (")[0] for line in lines] == [
        "epoch 1/3: train/acc 0.5000", "epoch 2/3: train/acc 0.6000", "epoch 3/3: train/acc 0.7000"
    ]  # fmt: skip
    assert "\r" not in captured.out + captured.err
