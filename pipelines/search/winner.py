"""The search's winner: `python winner.py`, as dvc repro runs it from this directory. The best trial's
overrides (reports/search.json) given to the real src/train.py, then src/evaluate.py, into winner/."""

import json
import subprocess
import sys
from pathlib import Path

from digitpipe.errors import DataError, exit_on_user_error
from digitpipe.search.winner import winner_overrides

HERE = Path(__file__).resolve().parent
PROJECT = Path("../..")


@exit_on_user_error
def main() -> int:
    summary_path = HERE / "reports" / "search.json"
    summary = json.loads(summary_path.read_text())
    if not summary.get("best"):
        raise DataError(f"{summary_path} names no best trial; run the search stage first")
    best, parent = summary["best"], summary.get("mlflow_run_id")
    overrides = winner_overrides(best, summary["study"], Path("winner"), parent)
    for script in ("train.py", "evaluate.py"):
        done = subprocess.run([sys.executable, str(PROJECT / "src" / script), *overrides], cwd=HERE)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
