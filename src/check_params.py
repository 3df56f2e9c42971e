"""The pipeline's first stage: `dvc repro` never runs on a params.yaml that conf/ no longer composes to.

DVC reruns a stage when its params or deps change; an edit under conf/ changes neither until
`dvc exp run` recomposes params.yaml. This stage depends on conf/ itself, so any edit there runs
it: it passes when conf/ still composes to params.yaml (a comment, a formatting change) and
otherwise stops `dvc repro` with one line naming the keys and the command to run.
"""

from pathlib import Path

from digitpipe.cli import check_params_current
from digitpipe.errors import exit_on_user_error

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"

if __name__ == "__main__":
    exit_on_user_error(check_params_current)(["-cd", ".", "-cn", "params"], CONFIG_DIR)
    print("conf/ composes to params.yaml")
