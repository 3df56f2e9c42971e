"""cli.quiet_libraries drops what the libraries print on every training and nothing else.

Each line is made by the library's own code, once without the filters (it is printed) and once with.
"""

import logging
import shutil
import warnings

import pytest

from digitpipe.cli import NOISE_LOGS, _Without, quiet_libraries


def library_warnings(quiet: bool) -> list[str]:
    from lightning.fabric.plugins.environments.slurm import SLURMEnvironment
    from lightning.pytorch.utilities._pytree import _tree_flatten

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # pytest's own filterwarnings (pyproject) drop these too
        if quiet:
            quiet_libraries()
        SLURMEnvironment._validate_srun_used()  # srun installed, this process not started by it
        _tree_flatten(1.0)  # Lightning 2.6 still builds torch's deprecated LeafSpec
        warnings.warn("a warning of the project's own", UserWarning, stacklevel=1)
    return [str(w.message) for w in caught]


@pytest.fixture
def srun_installed(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: "/usr/bin/srun" if name == "srun" else real(name)
    )
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    monkeypatch.setattr("sys.argv", ["src/train.py"])


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def seen():
    """What NOISE_LOGS' loggers let through their own filters; as they were afterwards."""
    loggers = [logging.getLogger(name) for name in NOISE_LOGS]
    before = [(logger.level, logger.handlers, logger.propagate) for logger in loggers]
    lines = Lines()
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.handlers, logger.propagate = [lines], False
    yield lines
    for logger, (level, handlers, propagate) in zip(loggers, before, strict=True):
        logger.setLevel(level)
        logger.handlers, logger.propagate = handlers, propagate
        for f in [f for f in logger.filters if isinstance(f, _Without)]:
            logger.removeFilter(f)


def test_lightnings_srun_hint_and_torchs_leafspec_warning_are_dropped_and_others_kept(srun_installed, seen):
    loud = library_warnings(quiet=False)
    assert any("`srun` command is available" in m for m in loud)
    assert any("LeafSpec" in m for m in loud)
    assert library_warnings(quiet=True) == ["a warning of the project's own"]


def test_the_litlogger_advert_and_mlflows_local_version_label_are_dropped(monkeypatch, seen):
    from lightning.pytorch.utilities.rank_zero import rank_zero_info
    from mlflow.utils import requirements_utils

    monkeypatch.setattr(requirements_utils, "_get_installed_version", lambda *a, **k: "2.13.0+cpu")

    def lines() -> list[str]:
        seen.lines.clear()
        rank_zero_info("💡 Tip: For seamless cloud logging ... try installing [litlogger](...)")
        assert requirements_utils._get_pinned_requirement("torch").startswith("torch==2.13.0")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
        return seen.lines

    assert len(lines()) == 3
    quiet_libraries()
    quiet_libraries()  # twice, as every train() of a search does: one filter each
    assert lines() == ["GPU available: False"]
    assert [len(logging.getLogger(name).filters) for name in NOISE_LOGS] == [1, 1]
