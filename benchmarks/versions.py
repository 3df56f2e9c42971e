"""The same training through the real CLI under this checkout and another commit, alternated.

    python benchmarks/versions.py --base 9f3c4ed --rounds 2 trainer.max_epochs=1

The base commit is checked out into a temporary git worktree and run with its own src/ first on
the path (the installed dependencies are shared), so the two differ only in this project's code.
The order alternates (A B, B A, ...), so a machine that drifts during the runs favours neither.
Prints each run and the median ratios of wall time (start-up included) and fit time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from train_cli import ROOT, train_cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with, e.g. 9f3c4ed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both, e.g. trainer.max_epochs=1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        # the same prepared data (a DVC output, not in git) for both
        shutil.rmtree(base / "data", ignore_errors=True)
        (ROOT / "data").mkdir(exist_ok=True)
        (base / "data").symlink_to(ROOT / "data")
        try:
            versions = {f"base {args.base}": base, "this checkout": ROOT}
            runs: dict[str, list[dict]] = {name: [] for name in versions}
            for round_ in range(args.rounds):
                order = list(versions.items())
                for name, root in order if round_ % 2 == 0 else order[::-1]:  # ABBA: drift cancels
                    result = train_cli(args.overrides, Path(tmp) / f"{round_}-{len(runs[name])}-{root.name}",
                                       root=root)  # fmt: skip
                    runs[name].append(result)
                    print(f"round {round_ + 1} {name:<20} wall {result['wall_s']:6.1f} s  fit "
                          f"{result['fit_s']:6.1f} s  val acc {result['val_acc']:.4f}  test acc "
                          f"{result['test_acc']:.4f}  ({result['precision']})", flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    (old, new) = runs.values()
    for key in ("wall_s", "fit_s"):
        ratio = statistics.median(r[key] for r in new) / statistics.median(r[key] for r in old)
        print(f"{key}: median {statistics.median(r[key] for r in new):.1f} against "
              f"{statistics.median(r[key] for r in old):.1f}, ratio {ratio:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
