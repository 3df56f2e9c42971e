"""Fetch the dataset's gzipped IDX files from an ordered list of mirrors, verified by checksum."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import itertools
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig
from tqdm import tqdm

from digitpipe import atomic
from digitpipe.config.numbers import seconds
from digitpipe.environment import MNIST_MIRROR
from digitpipe.errors import DownloadError
from digitpipe.paths import project_root, resolve

MIRROR_ENV = MNIST_MIRROR
CHUNK = 1 << 16


@dataclass(frozen=True)
class DatasetFile:
    """One decompressed file of the dataset and the sha256 of its content."""

    name: str
    sha256: str


class MirrorFailure(Exception):
    """One mirror could not deliver one file; the message says why."""


def mirror_order(configured: Iterable[str], override: str | None, env: Mapping[str, str]) -> list[str]:
    """$MNIST_MIRROR first, then the configured override, then the configured mirrors; no repeats."""
    ordered = [env.get(MIRROR_ENV) or None, override, *configured]
    return list(dict.fromkeys(m for m in ordered if m))


def file_url(mirror: str, filename: str) -> str:
    """The location of `filename` on `mirror`: an http(s)/file URL or a plain directory.

    A relative directory is relative to the project root, also when DVC runs the stage in a temp
    copy under .dvc/tmp (`MNIST_MIRROR=../shared/datasets/mnist dvc exp run --temp`).
    """
    scheme = urlparse(mirror).scheme
    if scheme in ("http", "https", "file"):
        return mirror.rstrip("/") + "/" + filename
    return resolve(Path(mirror).expanduser(), project_root()).resolve().joinpath(filename).as_uri()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_verified(path: Path, expected: DatasetFile) -> bool:
    """True if `path` exists and its content has the expected checksum."""
    return path.is_file() and atomic.file_digest(path, "sha256") == expected.sha256


class _NoBar:
    def update(self, n: int) -> None:
        pass


def progress(total: int | None, label: str) -> contextlib.AbstractContextManager:
    """A byte counter on a terminal; in a log (dvc repro, CI) it would be carriage-return redraws,
    so none (not even a disabled tqdm, which starts tqdm's monitor thread)."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(_NoBar())
    return tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False)


def fetch(url: str, timeout_s: float, deadline_s: float, label: str) -> bytes:
    """Read a whole URL, with a progress bar.

    timeout_s bounds each wait for the mirror; deadline_s bounds the whole transfer, so a mirror that
    trickles a byte at a time is abandoned too (checked between reads, which wait min(timeout_s,
    deadline_s) at most).
    """
    deadline = time.monotonic() + deadline_s
    late = f"not complete within the {deadline_s:g}s per-file deadline (data.download.file_deadline_s)"
    try:
        with urllib.request.urlopen(url, timeout=min(timeout_s, deadline_s)) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            buffer = io.BytesIO()
            with progress(total, label) as bar:
                # read1: one socket read per call; read() would wait for a whole chunk of a trickle
                while chunk := response.read1(CHUNK):
                    buffer.write(chunk)
                    bar.update(len(chunk))
                    if time.monotonic() > deadline:
                        raise MirrorFailure(f"{late}: got {buffer.tell()} of {total or '?'} bytes")
    except urllib.error.HTTPError as err:
        raise MirrorFailure(f"HTTP {err.code} {err.reason}") from err
    except (OSError, http.client.HTTPException) as err:  # URLError and socket timeouts are OSErrors
        overdue = timeout_s >= deadline_s or time.monotonic() >= deadline  # then a timeout is the deadline's
        raise MirrorFailure(reason_of(err, timeout_s, late if overdue else None)) from err
    data = buffer.getvalue()
    if total is not None and len(data) != total:
        raise MirrorFailure(f"truncated: got {len(data)} of {total} bytes")
    return data


def reason_of(err: Exception, timeout_s: float, late: str | None) -> str:
    """Why a transfer failed, in words; `late` when it failed by waiting past the file's deadline."""
    reason = getattr(err, "reason", err)  # URLError wraps the socket's error
    if isinstance(reason, TimeoutError):
        return late or f"timed out after {timeout_s:g}s"
    return str(getattr(reason, "strerror", None) or reason)


def decompress_and_verify(archive: bytes, expected: DatasetFile) -> bytes:
    """Gunzip a downloaded archive and check its content (mirrors recompress; content is fixed)."""
    if archive.lstrip()[:1] == b"<":
        raise MirrorFailure("served an HTML page, not a gzip file")
    try:
        content = gzip.decompress(archive)
    except (OSError, EOFError) as err:
        raise MirrorFailure(f"corrupt or truncated gzip ({err})") from err
    digest = sha256_of(content)
    if digest != expected.sha256:
        raise MirrorFailure(f"checksum mismatch: sha256 {digest[:12]}..., expected {expected.sha256[:12]}...")
    return content


def download_file(
    file: DatasetFile, mirrors: list[str], dest: Path, timeout_s: float, deadline_s: float
) -> None:
    """Write `file` verified to `dest`, trying each mirror in turn; raise DownloadError if none works."""
    archive_name = file.name + ".gz"
    failures = []
    for mirror, next_mirror in itertools.pairwise([*mirrors, None]):
        try:
            archive = fetch(file_url(mirror, archive_name), timeout_s, deadline_s, archive_name)
            atomic.write_bytes(dest, decompress_and_verify(archive, file))
            print(f"{archive_name}: {len(archive) / 1e6:.1f} MB from {mirror}, checksum verified", flush=True)
            return
        except MirrorFailure as failure:
            failures.append(f"{mirror} ({failure})")
            if next_mirror:
                notice = f"notice: {mirror} failed for {archive_name} ({failure}); trying {next_mirror}"
                print(notice, file=sys.stderr, flush=True)
    tried = "; ".join(failures) or "no mirrors configured"
    raise DownloadError(
        f"could not get {archive_name} from any mirror: {tried}. "
        f"Set {MIRROR_ENV} to a directory or URL that holds the MNIST .gz files "
        f"(e.g. {MIRROR_ENV}=../shared/datasets/mnist)"
    )


def download_dataset(
    files: Iterable[DatasetFile], mirrors: list[str], raw_dir: Path, timeout_s: float, deadline_s: float
) -> list[Path]:
    """Make `raw_dir` hold every file, verified; files already present and verified are kept.

    timeout_s bounds each wait for a mirror, deadline_s each file's whole transfer from one mirror.
    """
    paths = []
    for file in files:
        dest = raw_dir / file.name
        if not is_verified(dest, file):
            download_file(file, mirrors, dest, timeout_s, deadline_s)
        paths.append(dest)
    return paths


def dataset_files(files_cfg: Mapping[str, Any]) -> dict[str, DatasetFile]:
    return {key: DatasetFile(name=f["name"], sha256=f["sha256"]) for key, f in files_cfg.items()}


@dataclass(frozen=True)
class Download:
    """The download stage: every raw file, verified, in raw_dir (files already there are kept)."""

    files: Mapping[str, DatasetFile]  # keyed train_images, train_labels, test_images, test_labels
    mirrors: tuple[str, ...]
    raw_dir: Path
    timeout_s: float  # the longest wait for a mirror
    file_deadline_s: float  # the longest transfer of one file from one mirror

    def run(self) -> None:
        download_dataset(
            self.files.values(), list(self.mirrors), self.raw_dir, self.timeout_s, self.file_deadline_s
        )


def planned_download(cfg: DictConfig) -> Download:
    """The config's download, its values checked ($MNIST_MIRROR is read here too)."""
    download = cfg.data.download
    return Download(
        files=dataset_files(cfg.data.files),
        mirrors=tuple(mirror_order(download.mirrors, download.mirror, os.environ)),
        raw_dir=resolve(cfg.paths.raw_dir),
        timeout_s=seconds("data.download.timeout_s", download.timeout_s, "the longest wait for a mirror"),
        file_deadline_s=seconds(
            "data.download.file_deadline_s", download.file_deadline_s, "the longest one file may take"
        ),
    )
