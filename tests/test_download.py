"""vicuna.download and scripts/download.py against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vicuna.download import DownloadError, download

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = random.Random(0).randbytes(2_500_000)  # a few 1 MiB chunks, not a multiple of one
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves server.files with Range support; server.plan scripts the next answers.

    Plan entries, used one per request: an int (answer with that status), "cut" (send
    the whole Content-Length, write half the body, close), "ignore-range" (answer 200
    with the whole file even to a Range request), "stall" (say nothing, then close),
    "small-206" (answer 206 with at most 700 kB from the asked start, like a CDN that caps
    range sizes).
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        srv = self.server
        srv.seen.append({"path": self.path, "range": self.headers.get("Range")})
        action = srv.plan.pop(0) if srv.plan else "serve"
        body = srv.files.get(self.path)
        if isinstance(action, int) or body is None:
            status = action if isinstance(action, int) else 404
            self._send(status, b"nope\n", {})
        elif action == "stall":
            time.sleep(srv.stall)
            self.close_connection = True
        elif action == "cut":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif action == "small-206":
            first = int((self.headers.get("Range") or "bytes=0-")[6:].split("-")[0])
            last = min(first + 700_000, len(body)) - 1
            span = f"bytes {first}-{last}/{len(body)}"
            self._send(206, body[first : last + 1], {"Content-Range": span})
        elif self.headers.get("Range") and action != "ignore-range":
            first = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if first >= len(body):
                self._send(416, b"<html>416</html>", {"Content-Range": f"bytes */{len(body)}"})
            else:
                span = f"bytes {first}-{len(body) - 1}/{len(body)}"
                self._send(206, body[first:], {"Content-Range": span})
        else:
            self._send(200, body, {"Accept-Ranges": "bytes"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy from the environment must not interfere
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    # The client hanging up mid-answer is what several tests do on purpose: no traceback.
    httpd.handle_error = lambda request, client_address: None
    httpd.files = {"/model.bin": PAYLOAD}
    httpd.plan = []
    httpd.seen = []
    httpd.stall = 1.0
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def url(httpd: ThreadingHTTPServer, path: str = "/model.bin") -> str:
    return f"http://127.0.0.1:{httpd.server_port}{path}"


def fetch(source: str, output: Path, **kwargs) -> dict:
    return download(source, output, backoff=0.01, progress=False, **kwargs)


def part_of(output: Path) -> Path:
    return output.with_name(output.name + ".part")


def test_resumes_after_connection_cut_halfway(server, tmp_path):
    server.plan = ["cut"]
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    # The resume starts where the kept bytes end: at most half (urllib3 drops the last
    # partial 1 MiB read when the body ends early), and never from scratch.
    kept = manifest["resumed_from"]
    assert 0 < kept <= len(PAYLOAD) // 2
    assert [s["range"] for s in server.seen] == [None, f"bytes={kept}-"]
    assert out.read_bytes() == PAYLOAD
    assert manifest["sha256"] == PAYLOAD_SHA
    assert manifest["bytes"] == len(PAYLOAD)
    assert manifest["output"] == str(out) and manifest["source"] == url(server)
    assert not part_of(out).exists()


def test_short_206_answers_are_continued(server, tmp_path):
    server.plan = ["small-206"] * 10
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA, retries=0)
    starts = [None, "bytes=700000-", "bytes=1400000-", "bytes=2100000-"]
    assert [s["range"] for s in server.seen] == starts
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 2_100_000


def test_retries_5xx_then_succeeds(server, tmp_path):
    server.plan = [503, 503]
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert len(server.seen) == 3
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 0


def test_gives_up_after_retries(server, tmp_path):
    server.plan = [500] * 10
    out = tmp_path / "model.bin"
    with pytest.raises(DownloadError, match="giving up after 2 retries: HTTP 500"):
        fetch(url(server), out, retries=2)
    assert len(server.seen) == 3
    assert not out.exists()


def test_retries_read_timeout(server, tmp_path):
    server.plan = ["stall"]
    out = tmp_path / "model.bin"
    fetch(url(server), out, sha256=PAYLOAD_SHA, timeout=0.2)
    assert len(server.seen) == 2
    assert out.read_bytes() == PAYLOAD


def test_wrong_bytes_fail_sha256_and_leave_nothing(server, tmp_path):
    server.files["/model.bin"] = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])
    observed = hashlib.sha256(server.files["/model.bin"]).hexdigest()
    out = tmp_path / "model.bin"
    with pytest.raises(DownloadError) as err:
        fetch(url(server), out, sha256=PAYLOAD_SHA)
    message = str(err.value)
    assert "sha256" in message and str(out) in message and url(server) in message
    assert PAYLOAD_SHA in message and observed in message
    assert "\n" not in message
    assert not out.exists()
    assert not part_of(out).exists()


def test_404_fails_at_once(server, tmp_path):
    out = tmp_path / "model.bin"
    missing = url(server, "/missing.bin")
    with pytest.raises(DownloadError) as err:
        fetch(missing, out)
    assert missing in str(err.value) and "404" in str(err.value)
    assert len(server.seen) == 1
    assert not out.exists()
    assert not part_of(out).exists()


def test_size_mismatch_is_reported(server, tmp_path):
    out = tmp_path / "model.bin"
    with pytest.raises(DownloadError, match=f"{len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        fetch(url(server), out, size=len(PAYLOAD) + 1)
    assert not out.exists()


def test_stale_part_restarts_when_server_ignores_range(server, tmp_path):
    out = tmp_path / "model.bin"
    part_of(out).write_bytes(b"junk from another file" * 100)
    server.plan = ["ignore-range"]
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert server.seen[0]["range"] == f"bytes={22 * 100}-"
    assert len(server.seen) == 1
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 0


def test_complete_part_from_earlier_run_is_kept_on_416(server, tmp_path):
    out = tmp_path / "model.bin"
    part_of(out).write_bytes(PAYLOAD)
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [s["range"] for s in server.seen] == [f"bytes={len(PAYLOAD)}-"]
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == len(PAYLOAD)


def test_partial_part_from_earlier_run_is_resumed(server, tmp_path):
    out = tmp_path / "model.bin"
    part_of(out).write_bytes(PAYLOAD[:1000])
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [s["range"] for s in server.seen] == ["bytes=1000-"]
    assert manifest["sha256"] == PAYLOAD_SHA and manifest["resumed_from"] == 1000


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-url"])
def test_local_source_is_copied_with_checksum(tmp_path, as_uri):
    src = tmp_path / "src dir" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    out = tmp_path / "out" / "weights.bin"
    source = src.as_uri() if as_uri else str(src)
    manifest = fetch(source, out, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    assert out.read_bytes() == PAYLOAD
    assert manifest["bytes"] == len(PAYLOAD) and manifest["sha256"] == PAYLOAD_SHA
    assert not part_of(out).exists()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(source, tmp_path / "again.bin", sha256="0" * 64)
    assert not (tmp_path / "again.bin").exists()
    assert not part_of(tmp_path / "again.bin").exists()


def test_empty_file(server, tmp_path):
    server.files["/empty.bin"] = b""
    out = tmp_path / "empty.bin"
    manifest = fetch(url(server, "/empty.bin"), out, sha256=hashlib.sha256(b"").hexdigest())
    assert out.read_bytes() == b"" and manifest["bytes"] == 0


def test_malformed_sha256_fails_before_any_request(server, tmp_path):
    with pytest.raises(DownloadError, match="not 64 hex digits"):
        fetch(url(server), tmp_path / "model.bin", sha256="abc")
    assert server.seen == []


def test_missing_local_source(tmp_path):
    with pytest.raises(DownloadError, match="no such file"):
        fetch(str(tmp_path / "absent.bin"), tmp_path / "out.bin")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # cwd outside the repo: the script must find `vicuna` on its own.
    cmd = [sys.executable, str(REPO / "scripts" / "download.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_success_writes_manifest(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "meta" / "m.json"
    done = run_cli(
        "--url", url(server), "--output", str(out), "--sha256", PAYLOAD_SHA,
        "--size", str(len(PAYLOAD)), "--manifest", str(manifest), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(manifest.read_text())
    assert data["sha256"] == PAYLOAD_SHA and data["bytes"] == len(PAYLOAD)
    assert data["output"] == str(out)
    assert out.read_bytes() == PAYLOAD


def test_cli_404_exits_1(server, tmp_path):
    missing = url(server, "/missing.bin")
    manifest = tmp_path / "m.json"
    done = run_cli(
        "--url", missing, "--output", str(tmp_path / "m.bin"), "--manifest", str(manifest),
        "--retries", "3", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and missing in done.stderr and "404" in done.stderr
    assert len(server.seen) == 1
    assert not manifest.exists()
