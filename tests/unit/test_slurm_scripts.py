"""The SLURM job scripts the tests submit (tests/integration/test_slurm.py) are the ones the docs show."""

import subprocess

import pytest

from ..conftest import ROOT

SCRIPTS = {"distributed.md": "ddp.sbatch", "search.md": "search.sbatch"}


@pytest.mark.parametrize("doc, script", SCRIPTS.items())
def test_the_docs_show_the_scripts_the_tests_submit_byte_for_byte(doc, script):
    assert (ROOT / "docs" / "slurm" / script).read_text() in (ROOT / "docs" / doc).read_text()


@pytest.mark.parametrize("script", SCRIPTS.values())
def test_each_script_is_valid_bash_whose_directives_come_before_any_command(script):
    path = ROOT / "docs" / "slurm" / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("# ")]
    directives = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    commands = [i for i, line in enumerate(lines) if not line.startswith("#")]
    assert directives and max(directives) < min(commands)  # sbatch ignores #SBATCH after a command
