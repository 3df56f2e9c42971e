"""CI's audit of the pinned set: `python .ci/audit.py PIP_AUDIT [LOCK]` (LOCK: requirements.lock).

1. pip-audit --strict: each pinned release's known vulnerabilities (the package index's per-release
   advisories, from the PyPA advisory database and OSV). Any one fails CI.
2. Where pip-audit cannot look a release up, it says "could not be audited" and, without --strict,
   passes: on this project's machines, whose index mirror serves no per-release JSON, it passed
   every release while auditing none. Then this script says so in one line and checks what the
   index's project pages still tell: every pinned release is still there and not yanked (the fate
   of lightning 2.6.2 and 2.6.3, GHSA-w37p-236h-pfx3), and a pin that is the newest release has no
   vulnerability listed. Any failure, or no answer from the index, fails CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from pip._internal.models.index import PyPI  # pip's default index, named by pip rather than here

ROOT = Path(__file__).resolve().parent.parent
# Known vulnerabilities accepted, each with why; any other fails CI
ACCEPTED = {
    # CVE-2025-69872, diskcache <= 5.6.3 (dvc-data's index cache; no fixed release): unpickles what is
    # in its cache directory, .dvc/tmp/ inside the project, where whoever can write can edit the code
    "GHSA-w8v5-vhqr-4h9v": "diskcache pickles its cache: write access to .dvc/tmp/ is code execution",
    "PYSEC-2026-2447": "the same, CVE-2025-69872",
}


def pinned(lock: Path) -> list[tuple[str, str]]:
    """(name, version) of each pin in `lock` that applies to this Python."""
    text = lock.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        spec = line.split(" --hash")[0].strip()
        if not spec or spec.startswith("#"):
            continue
        requirement = Requirement(spec)
        if requirement.marker is None or requirement.marker.evaluate():
            found.append((requirement.name, str(requirement.specifier).removeprefix("==")))
    return found


def index_problem(name: str, version: str) -> tuple[str | None, bool]:
    """(what is wrong with this pin on the index's project page, or None; whether it is the newest)."""
    with urllib.request.urlopen(f"{PyPI.pypi_url}/{name}/json", timeout=30) as answer:
        project = json.load(answer)
    files = project["releases"].get(version)
    if not files:
        return f"{name}=={version} is no longer on the index (pulled: pin another release)", False
    if all(f.get("yanked") for f in files):
        reason = files[0].get("yanked_reason") or "no reason given"
        return f"{name}=={version} is yanked ({reason})", False
    newest = project["info"]["version"] == version
    known = [v["id"] for v in project.get("vulnerabilities", []) if v["id"] not in ACCEPTED]
    if newest and known:
        return f"{name}=={version} has known vulnerabilities: {', '.join(known)}", True
    return None, newest


def index_audit(lock: Path) -> int:
    pins = pinned(lock)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda pin: index_problem(*pin), pins))
    problems = [problem for problem, _ in results if problem]
    newest = sum(is_newest for _, is_newest in results)
    for problem in problems:
        print(f"audit: {problem}")
    print(
        f"audit: {len(pins)} pins for this Python on the index's project pages: {len(problems)} problems; "
        f"{newest} are the newest release, checked for listed vulnerabilities; the other "
        f"{len(pins) - newest} only for being pulled or yanked"
    )
    return 1 if problems else 0


def main(pip_audit: str, lock: Path) -> int:
    command = [pip_audit, "--strict", "--disable-pip", "--no-deps", "-r", str(lock)]
    command += ["--progress-spinner", "off", *(a for v in ACCEPTED for a in ("--ignore-vuln", v))]
    audit = subprocess.run(command, capture_output=True, text=True)
    said = (audit.stdout + audit.stderr).strip()
    if audit.returncode == 0 or "known vulnerabilit" in audit.stdout:  # pip-audit's verdict
        print(said)
        return audit.returncode
    last = said.splitlines()[-1] if said else f"exit {audit.returncode}"
    print(f"audit: pip-audit could not look the pins up ({last}); the index's project pages instead")
    try:
        return index_audit(lock)
    except OSError as error:
        print(f"audit: the package index does not answer either ({error}): nothing audited")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "requirements.lock"))
