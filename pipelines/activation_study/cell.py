"""One cell of the activation study: `python cell.py <arm> <activation> <seed>`, as dvc repro runs it
from this directory. The real src/train.py (diagnostics=on) then src/evaluate.py, into cells/<cell>/."""

import subprocess
import sys
from pathlib import Path

import yaml

from digitpipe.cli import stage_config
from digitpipe.errors import ConfigError, exit_on_user_error
from digitpipe_study.cells import ARMS, Cell, cell_overrides

HERE = Path(__file__).resolve().parent
PROJECT = Path("../..")  # the main pipeline, relative to this directory


@exit_on_user_error
def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ARMS or not argv[2].isdigit():
        raise ConfigError(f"usage: python cell.py <{'|'.join(ARMS)}> <activation> <seed>; got {argv}")
    study = yaml.safe_load((HERE / "params.yaml").read_text())["study"]
    main_config = stage_config(HERE / PROJECT)  # its data and split: those of the main pipeline
    overrides = cell_overrides(study, Cell(argv[0], argv[1], int(argv[2])), main_config, PROJECT)
    for script in ("train.py", "evaluate.py"):
        done = subprocess.run([sys.executable, str(PROJECT / "src" / script), *overrides], cwd=HERE)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
