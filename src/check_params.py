"""The pipeline's first stage (check_conf): what the stages run, checked, then written down.

DVC reruns a stage when its params or deps change; a knob edited in conf/ reaches params.yaml only
when `dvc exp run` recomposes it. This stage depends on conf/ itself, so any edit there runs it:
where a knob in conf/ changed since params.yaml was composed, it stops `dvc repro` with one line
naming the keys and the command to run; params.yaml's own knobs (an experiment's) run as they are.
It writes conf/ with params.yaml's knobs, resolved, to reports/stage_config.yaml, which train and
evaluate run on and depend on: an edited setting that is not a knob reruns them with its new value,
and a comment reruns nothing.
"""

from pathlib import Path

from digitpipe.cli import write_stage_config
from digitpipe.errors import exit_on_user_error

PROJECT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    written = exit_on_user_error(write_stage_config)(PROJECT)
    print(f"the stages run {written.relative_to(PROJECT)}: conf/ with params.yaml's knobs")
