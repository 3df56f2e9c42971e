"""The search's winner: `python winner.py`, as dvc repro runs it from this directory. The best trial
(reports/search.json) trained again by the main pipeline's train, then tested by its evaluate, into
winner/, on as many torch threads as its trial."""

import json
from pathlib import Path

from hydra import compose, initialize_config_dir

from digitpipe.cli import VERSION_BASE
from digitpipe.errors import DataError, exit_on_user_error
from digitpipe_search.winner import make_winner

HERE = Path(__file__).resolve().parent


@exit_on_user_error
def main() -> None:
    summary = json.loads((HERE / "reports" / "search.json").read_text())
    if not summary.get("best"):
        raise DataError(f"{HERE / 'reports' / 'search.json'} names no best trial; run the search stage first")
    with initialize_config_dir(str(HERE.parents[1] / "conf"), version_base=VERSION_BASE):
        make_winner(lambda overrides: compose("config", overrides=overrides), summary["best"],
                    summary["study"], Path("winner"), summary.get("mlflow_run_id"))  # fmt: skip


if __name__ == "__main__":
    main()
