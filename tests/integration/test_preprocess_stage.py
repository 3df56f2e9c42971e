"""The preprocess stage through its CLI: the same inputs give the same bytes, so DVC sees no change."""

import hashlib

import pytest

from ..conftest import project_with_raw_files, run_cli

pytestmark = pytest.mark.slow


def test_preprocess_twice_writes_byte_identical_outputs(tmp_path, tiny_raw):
    project, overrides = project_with_raw_files(tmp_path / "p", tiny_raw)
    outputs = [project / "data" / "processed" / name for name in ("mnist.pt", "stats.json")]
    md5s = []
    for _ in range(2):
        result = run_cli(["python", "src/preprocess.py", *overrides, "data.val_size=100"], cwd=project)
        assert result.returncode == 0, result.stderr[-3000:]
        md5s.append([hashlib.md5(path.read_bytes()).hexdigest() for path in outputs])
        for path in outputs:
            path.unlink()  # the second run writes them afresh
    assert md5s[0] == md5s[1]
