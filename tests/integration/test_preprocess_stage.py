"""The preprocess stage through its CLI: the same inputs give the same bytes, so DVC sees no change."""

import hashlib

import pytest

from ..conftest import FILE_NAMES, copy_project, files_config, run_cli

pytestmark = pytest.mark.slow


def test_preprocess_twice_writes_byte_identical_outputs(tmp_path, tiny_raw):
    project = copy_project(tmp_path / "p")
    raw_dir = project / "data" / "raw"
    raw_dir.mkdir(parents=True)
    for key, content in tiny_raw.items():
        (raw_dir / FILE_NAMES[key]).write_bytes(content)
    overrides = [f"data.files.{k}.sha256={v['sha256']}" for k, v in files_config(tiny_raw).items()]
    outputs = [project / "data" / "processed" / name for name in ("mnist.pt", "stats.json")]
    md5s = []
    for _ in range(2):
        result = run_cli(["python", "src/preprocess.py", *overrides, "data.val_size=100"], cwd=project)
        assert result.returncode == 0, result.stderr[-3000:]
        md5s.append([hashlib.md5(path.read_bytes()).hexdigest() for path in outputs])
        for path in outputs:
            path.unlink()  # the second run writes them afresh
    assert md5s[0] == md5s[1]
