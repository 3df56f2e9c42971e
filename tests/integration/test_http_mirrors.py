"""The mirror logic against real HTTP servers on 127.0.0.1: dead, stalled, corrupt, HTML, good."""

import contextlib
import gzip
import socket
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from digitpipe.data.download import DatasetFile, download_dataset
from digitpipe.errors import DownloadError

from ..conftest import FILE_NAMES, files_config, free_port


class MirrorHandler(SimpleHTTPRequestHandler):
    """/good/ serves the fixture files, /truncated/ cuts them short, /html/ serves a login page."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/html/"):
            return self._send(b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html")
        if self.path.startswith("/truncated/"):
            data = (self.directory_path / self.path.split("/")[-1]).read_bytes()
            return self._send(data[: len(data) // 2], "application/gzip")
        if self.path.startswith("/good/"):
            self.path = self.path[len("/good") :]
            return super().do_GET()
        self.send_error(404)

    def _send(self, body, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def http_mirror(tiny_mirror):
    handler = partial(MirrorHandler, directory=str(tiny_mirror))
    MirrorHandler.directory_path = tiny_mirror
    server = serve(handler)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def stalled_mirror():
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()


@pytest.fixture
def dead_mirror():
    return f"http://127.0.0.1:{free_port()}/"  # nothing listens there


@pytest.fixture
def trickling_mirror(tiny_mirror):
    """Answers at once, then sends the file one byte every `interval` seconds (for 20 s at most)."""
    servers = []

    def start(interval: float) -> str:
        class Trickle(MirrorHandler):
            def do_GET(self):
                body = (tiny_mirror / self.path.split("/")[-1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                stop = time.monotonic() + 20  # a client that never gives up gets a truncated file
                with contextlib.suppress(OSError):  # the client hung up: what the deadline does
                    for byte in body:
                        if time.monotonic() > stop:
                            break
                        self.wfile.write(bytes([byte]))
                        time.sleep(interval)

        servers.append(serve(Trickle))
        return f"http://127.0.0.1:{servers[-1].server_port}/"

    yield start
    for server in servers:
        server.shutdown()


def specs(raw):
    return [DatasetFile(**f) for f in files_config(raw).values()]


def notices(capsys) -> list[str]:
    """The notice lines on stderr (tqdm's bars share it, separated by carriage returns)."""
    err = capsys.readouterr().err
    return [part for line in err.splitlines() for part in line.split("\r") if part.startswith("notice:")]


def test_download_falls_through_dead_stalled_corrupt_and_html_mirrors_to_the_good_one_saying_so(
    tmp_path, tiny_raw, http_mirror, dead_mirror, stalled_mirror, capsys
):
    mirrors = [dead_mirror, stalled_mirror, f"{http_mirror}/truncated/", f"{http_mirror}/html/",
               f"{http_mirror}/good/"]  # fmt: skip
    started = time.monotonic()
    download_dataset(specs(tiny_raw), mirrors, tmp_path / "raw", timeout_s=1, deadline_s=60)
    assert time.monotonic() - started < 30  # four files x one 1 s stall each, not a hang
    for key, content in tiny_raw.items():
        assert (tmp_path / "raw" / FILE_NAMES[key]).read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(FILE_NAMES.values())
    reasons = ["Connection refused", "timed out after 1s", "corrupt or truncated gzip", "served an HTML page"]
    lines = notices(capsys)
    assert len(lines) == 4 * 4  # four failing mirrors for each of the four files
    first = f"{FILE_NAMES['train_images']}.gz"
    for line, mirror, reason, next_mirror in zip(lines, mirrors, reasons, mirrors[1:], strict=False):
        assert line.startswith(f"notice: {mirror} failed for {first} ({reason}"), line
        assert line.endswith(f"; trying {next_mirror}"), line


def test_every_failing_mirror_is_named_with_its_reason(
    tmp_path, tiny_raw, http_mirror, dead_mirror, stalled_mirror
):
    mirrors = [dead_mirror, stalled_mirror, f"{http_mirror}/truncated/", f"{http_mirror}/html/",
               f"{http_mirror}/missing/"]  # fmt: skip
    with pytest.raises(DownloadError) as err:
        download_dataset(specs(tiny_raw), mirrors, tmp_path / "raw", timeout_s=1, deadline_s=60)
    message = str(err.value)
    assert f"{dead_mirror} (Connection refused)" in message
    assert f"{stalled_mirror} (timed out after 1s)" in message
    assert "/truncated/ (corrupt or truncated gzip" in message
    assert "/html/ (served an HTML page, not a gzip file)" in message
    assert "/missing/ (HTTP 404" in message
    assert "MNIST_MIRROR" in message
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_a_short_body_is_caught_even_when_the_gzip_would_decode(tmp_path, tiny_raw):
    body = gzip.compress(tiny_raw["test_labels"])

    class Liar(MirrorHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)

    server = serve(Liar)
    spec = [DatasetFile(**files_config(tiny_raw)["test_labels"])]
    with pytest.raises(DownloadError, match="truncated: got"):
        download_dataset(spec, [f"http://127.0.0.1:{server.server_port}/"], tmp_path / "raw", 2, 60)
    server.shutdown()


@pytest.mark.parametrize("interval", [2.0, 0.2])  # no byte within the deadline; bytes keep coming, too slowly
def test_a_trickling_mirror_is_abandoned_at_the_file_deadline_and_the_next_one_delivers(
    tmp_path, tiny_raw, http_mirror, trickling_mirror, capsys, interval
):
    trickle, good = trickling_mirror(interval), f"{http_mirror}/good/"
    spec = [DatasetFile(**files_config(tiny_raw)["test_labels"])]
    started = time.monotonic()
    download_dataset(spec, [trickle, good], tmp_path / "raw", timeout_s=30, deadline_s=1.5)
    assert 1.5 <= time.monotonic() - started < 5  # the 30 s read timeout alone would never fire
    assert (tmp_path / "raw" / FILE_NAMES["test_labels"]).read_bytes() == tiny_raw["test_labels"]
    (notice,) = notices(capsys)
    assert notice.startswith(
        f"notice: {trickle} failed for {FILE_NAMES['test_labels']}.gz (not complete "
        "within the 1.5s per-file deadline (data.download.file_deadline_s)"
    )
    assert notice.endswith(f"; trying {good}")
