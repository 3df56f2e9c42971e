"""Fill a directory with the four MNIST .gz files, for a CI runner with no ../shared beside the clone.

    python3 .ci/mnist_mirror.py DIR [URL...]    then MNIST_MIRROR=DIR bash .ci/run

Standard library only (it runs before any venv). The mirrors are conf/data/mnist.yaml's, after any
URL given; each file is kept only when its decompressed sha256 is the one conf/ names. Files
already in DIR that check out are kept (the forge's cache restores DIR: .github/workflows/ci.yml).
"""

import gzip
import hashlib
import re
import sys
import urllib.request
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf" / "data" / "mnist.yaml"


def wanted() -> tuple[list[str], dict[str, str]]:
    """(the mirrors, file name -> sha256 of its decompressed content), as conf/data/mnist.yaml says."""
    text = CONF.read_text()
    mirrors = re.findall(r"^\s+- (https?://\S+)", text, re.M)
    files = dict(re.findall(r"^\s+name: (\S+)\s*\n\s+sha256: ([0-9a-f]{64})", text, re.M))
    return mirrors, files


def good(data: bytes, sha256: str) -> bool:
    try:
        return hashlib.sha256(gzip.decompress(data)).hexdigest() == sha256
    except (OSError, EOFError):
        return False


def fill(target: Path, mirrors: list[str], files: dict[str, str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, sha256 in files.items():
        path = target / f"{name}.gz"
        if path.is_file() and good(path.read_bytes(), sha256):
            continue
        for mirror in mirrors:
            try:
                with urllib.request.urlopen(f"{mirror.rstrip('/')}/{name}.gz", timeout=60) as answer:
                    data = answer.read()
            except OSError as error:
                print(f"{name}.gz: {mirror}: {error}")
                continue
            if good(data, sha256):
                path.write_bytes(data)
                print(f"{name}.gz: {len(data) / 1e6:.1f} MB from {mirror}")
                break
            print(f"{name}.gz: {mirror}: not the file conf/ names (sha256)")
        else:
            sys.exit(f"{name}.gz: no mirror had it")


if __name__ == "__main__":
    mirrors, files = wanted()
    assert len(files) == 4 and mirrors, f"{CONF} no longer has the layout this script reads"
    fill(Path(sys.argv[1]), sys.argv[2:] + mirrors, files)
