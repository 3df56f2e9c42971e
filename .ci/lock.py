"""Write constraints.txt and requirements.lock from what pip resolved on each tested Python.

    pip install --dry-run --ignore-installed --quiet --report report-3.11.json -c constraints.txt -e ".[dev]"
    ... the same in a venv of each Python (drop `-c constraints.txt` to move to the newest releases)
    python .ci/lock.py report-3.11.json report-3.13.json report-3.14.json

constraints.txt pins every package; a pin that differs between the Pythons carries a marker naming
them. requirements.lock is the same pins with the sha256 of each file pip chose (a +cpu build from a
local directory included): pip takes hashes in a constraints file, but then requires one for every
package installed, the project itself too, which as a directory has none. So CI installs
requirements.lock with --require-hashes, then the project with --no-deps (.ci/run).
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# {what}: every package the tests ran on, on Python {pythons}.
# Written by .ci/lock.py from pip's resolution on each (its docstring: the commands); do not edit.
# {use}
"""


def pins(reports: list[Path]) -> dict[tuple[str, str], tuple[list[str], set[str]]]:
    """(name, version) -> (the Pythons that installed it, the sha256 of each file they took)."""
    found: dict[tuple[str, str], tuple[list[str], set[str]]] = defaultdict(lambda: ([], set()))
    for report in reports:
        data = json.loads(report.read_text())
        python = data["environment"]["python_version"]
        for item in data["install"]:
            info = item["download_info"]
            if "dir_info" in info:  # the project itself
                continue
            name = item["metadata"]["name"].lower().replace("_", "-").replace(".", "-")
            version = item["metadata"]["version"].split("+")[0]  # torch 2.13.0+cpu is torch==2.13.0
            pythons, hashes = found[(name, version)]
            pythons.append(python)
            hashes.add(info["archive_info"]["hashes"]["sha256"])
    return found


def marker(pythons: list[str], every: list[str]) -> str:
    if sorted(pythons) == every:
        return ""
    return " ; " + " or ".join(f'python_version == "{p}"' for p in sorted(pythons))


def main(reports: list[Path]) -> None:
    found = pins(reports)
    every = sorted({p for pythons, _ in found.values() for p in pythons})
    pythons = ", ".join(every)
    constraints = HEADER.format(
        what="constraints.txt", pythons=pythons, use='pip install -c constraints.txt -e ".[dev]"'
    )
    lock = HEADER.format(
        what="requirements.lock",
        pythons=pythons,
        use="pip install --require-hashes --no-deps -r requirements.lock && pip install --no-deps -e .",
    )
    for (name, version), (on, hashes) in sorted(found.items()):
        line = f"{name}=={version}{marker(on, every)}"
        constraints += line + "\n"
        lock += line + "".join(f" \\\n    --hash=sha256:{h}" for h in sorted(hashes)) + "\n"
    (ROOT / "constraints.txt").write_text(constraints)
    (ROOT / "requirements.lock").write_text(lock)
    print(f"{len(found)} pins for Python {pythons}: constraints.txt, requirements.lock")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
