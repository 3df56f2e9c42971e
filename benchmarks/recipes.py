"""Wall time, fit time, steps/s and test accuracy of recipes through the real CLI, on one device.

    python benchmarks/recipes.py                                  # CPU: the seed recipe, experiment=fast
    python benchmarks/recipes.py --common trainer=gpu             # the same on a GPU
    python benchmarks/recipes.py --recipe "fp32=trainer.precision=32-true" --common trainer=gpu

Each recipe is one `python src/train.py` (test_after_fit=true) in a temporary directory; `wall`
includes start-up (imports, data loading, MLflow run), `fit` is trainer.fit alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from train_cli import train_cli

RECIPES = {"seed recipe": [], "experiment=fast": ["experiment=fast"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--common", nargs="*", default=[], help="overrides for every recipe")
    parser.add_argument("--recipe", action="append", default=[], help="NAME=override[,override...]")
    parser.add_argument("--only-extra", action="store_true", help="skip the seed and fast recipes")
    parser.add_argument("--json", type=Path, help="also write every result here")
    args = parser.parse_args()
    recipes = {} if args.only_extra else dict(RECIPES)
    for spec in args.recipe:
        name, _, overrides = spec.partition("=")
        recipes[name] = overrides.split(",")
    print(f"| recipe ({' '.join(args.common) or 'trainer=cpu'}) | precision | epochs | wall | fit | steps/s "
          "| val acc | test acc |\n|---|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    results = {}
    for name, overrides in recipes.items():
        with tempfile.TemporaryDirectory() as tmp:
            r = results[name] = train_cli([*args.common, *overrides], Path(tmp), "recipes")
        rate = r["steps"] / r["fit_s"]
        print(f"| {name} | {r['precision']} | {r['epochs']} | {r['wall_s']:.1f} s | {r['fit_s']:.1f} s | "
              f"{rate:.0f} | {r['val_acc']:.4f} | {r['test_acc']:.4f} |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
