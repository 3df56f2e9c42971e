"""Every script in src/ parses its command line on this Python, in seconds.

The other unit tests compose configs through Hydra's compose API, never `@hydra.main`: with
hydra-core 1.3.8 on Python 3.14 every CLI died in argparse (`ValueError: badly formed help string`)
while they all passed. Here each script's own `main()` answers `--help`, in-process.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hydra.core.global_hydra import GlobalHydra

SRC = Path(__file__).resolve().parents[2] / "src"
HYDRA = ["train", "evaluate", "search", "download", "preprocess", "runs"]  # @hydra.main
ARGPARSE = ["predict"]
NO_ARGUMENTS = ["check_params", "plots_template"]  # they read no command line


def script(name: str) -> ModuleType:
    """src/<name>.py imported as a module (its `if __name__ == "__main__"` block does not run)."""
    spec = importlib.util.spec_from_file_location(name, SRC / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def help_text(name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    try:
        with pytest.raises(SystemExit) as stopped:
            script(name).main()
    finally:
        GlobalHydra.instance().clear()  # @hydra.main leaves its instance behind; compose() needs none
    assert stopped.value.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_every_script_in_src_is_classified_here():
    assert sorted(p.stem for p in SRC.glob("*.py")) == sorted(HYDRA + ARGPARSE + NO_ARGUMENTS)


@pytest.mark.parametrize("name", HYDRA)
def test_each_hydra_script_prints_its_help_with_the_config_groups(name, monkeypatch, capsys):
    text = help_text(name, monkeypatch, capsys)
    assert text.startswith(f"{name} is powered by Hydra.")
    assert "optimizer: adam, adamw, rmsprop, sgd" in text  # conf/ was found and its groups listed
    assert "== Config ==" in text


def test_predict_prints_its_usage(monkeypatch, capsys):
    text = help_text("predict", monkeypatch, capsys)
    assert text.startswith("usage: predict.py")
    assert "--model MODEL" in text
