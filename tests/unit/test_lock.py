"""constraints.txt and requirements.lock (written by .ci/lock.py) pin what pyproject.toml allows."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TESTED = ["3.11", "3.13", "3.14"]


def lines(name: str) -> list[str]:
    text = (ROOT / name).read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def pins_for(python: str) -> dict[str, str]:
    """name -> pinned version, for `python`."""
    env = {"python_version": python, "python_full_version": f"{python}.0", "extra": ""}
    pins = {}
    for line in lines("constraints.txt"):
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(env):
            assert requirement.name not in pins, f"{requirement.name} pinned twice for {python}"
            pins[requirement.name] = str(requirement.specifier).removeprefix("==")
    return pins


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_holds_the_constraints_pins_each_with_its_hashes():
    locked = [line.split(" --hash")[0].strip() for line in lines("requirements.lock")]
    assert locked == lines("constraints.txt")
    assert all(re.search(r"--hash=sha256:[0-9a-f]{64}", line) for line in lines("requirements.lock"))


def test_each_tested_python_is_one_the_project_accepts():
    header = (ROOT / "constraints.txt").read_text().splitlines()[0]
    assert header.endswith(f"on Python {', '.join(TESTED)}.")
    assert all(python + ".0" in SpecifierSet(PROJECT["requires-python"]) for python in TESTED)
    assert "3.15.0" not in SpecifierSet(PROJECT["requires-python"])  # untested: pip refuses it


@pytest.mark.parametrize("python", TESTED)
def test_every_dependency_is_pinned_to_a_release_pyproject_allows(python):
    pins = pins_for(python)
    extras = PROJECT["optional-dependencies"]
    wanted = PROJECT["dependencies"] + extras["dev"] + extras["team"]
    env = {"python_version": python, "python_full_version": f"{python}.0", "extra": ""}
    checked = 0
    for requirement in map(Requirement, wanted):
        if requirement.name == "digitpipe" or (requirement.marker and not requirement.marker.evaluate(env)):
            continue
        version = pins[normal(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
        checked += 1
    assert checked >= 20


def test_lightnings_malicious_releases_are_excluded_by_name():
    lightning = next(Requirement(d) for d in PROJECT["dependencies"] if d.startswith("lightning"))
    assert not any(lightning.specifier.contains(v) for v in ("2.6.2", "2.6.3"))  # GHSA-w37p-236h-pfx3
    assert lightning.specifier.contains("2.6.6")
