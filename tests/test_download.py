"""vicuna.download and scripts/download.py against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
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
# The file as the server has it after a change: same size, other bytes past the first third.
NEW_PAYLOAD = PAYLOAD[:800_000] + random.Random(1).randbytes(len(PAYLOAD) - 800_000)
NEW_SHA = hashlib.sha256(NEW_PAYLOAD).hexdigest()
MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


class Handler(BaseHTTPRequestHandler):
    """Serves server.files with Range and If-Range support; server.plan scripts the next answers.

    Every answer carries the validators named in server.validators: "etag" (strong, from the
    content), "weak-etag" and "last-modified" (server.modified[path]). If-Range is honoured
    as a server must: a validator that does not match gets the whole file (200).
    Plan entries, used one per request: an int (answer with that status), "cut" (send
    the whole Content-Length, write half the body, close), "hang" (the same, then wait until
    the test ends: the client is killed meanwhile), "ignore-range" (answer 200 with the whole
    file even to a Range request), "ignore-if-range" (answer a Range request with 206 whatever
    If-Range says), "stall" (say nothing, then close), "small-206" (answer 206 with at most
    700 kB from the asked start, like a CDN that caps range sizes).
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        srv = self.server
        srv.seen.append({"path": self.path, "range": self.headers.get("Range"),
                         "if_range": self.headers.get("If-Range")})
        action = srv.plan.pop(0) if srv.plan else "serve"
        body = srv.files.get(self.path)
        if isinstance(action, int) or body is None:
            status = action if isinstance(action, int) else 404
            self._send(status, b"nope\n", {})
        elif action == "stall":
            time.sleep(srv.stall)
            self.close_connection = True
        elif action in ("cut", "hang"):
            self._send_head(200, len(body), self._validators(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if action == "hang":
                srv.released.wait(30)
            self.close_connection = True
        elif action == "small-206":
            first = int((self.headers.get("Range") or "bytes=0-")[6:].split("-")[0])
            last = min(first + 700_000, len(body)) - 1
            span = f"bytes {first}-{last}/{len(body)}"
            self._send(206, body[first : last + 1], {"Content-Range": span, **self._validators(body)})
        elif self._range_applies(body, action):
            first = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if first >= len(body):
                self._send(416, b"<html>416</html>", {"Content-Range": f"bytes */{len(body)}"})
            else:
                span = f"bytes {first}-{len(body) - 1}/{len(body)}"
                self._send(206, body[first:], {"Content-Range": span, **self._validators(body)})
        else:
            self._send(200, body, {"Accept-Ranges": "bytes", **self._validators(body)})

    def _validators(self, body: bytes) -> dict[str, str]:
        names, headers = self.server.validators, {}
        if "etag" in names:
            headers["ETag"] = etag_of(body)
        if "weak-etag" in names:
            headers["ETag"] = "W/" + etag_of(body)
        if "last-modified" in names:
            headers["Last-Modified"] = self.server.modified.get(self.path, MODIFIED)
        return headers

    def _range_applies(self, body: bytes, action: str) -> bool:
        if not self.headers.get("Range") or action == "ignore-range":
            return False
        if_range = self.headers.get("If-Range")
        if if_range is None or action == "ignore-if-range":
            return True
        current = self._validators(body)
        return if_range in (current.get("ETag"), current.get("Last-Modified"))

    def _send_head(self, status: int, length: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self._send_head(status, len(body), headers)
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
    httpd.validators = {"etag", "last-modified"}
    httpd.modified = {}
    httpd.plan = []
    httpd.seen = []
    httpd.stall = 1.0
    httpd.released = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.released.set()
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


def state_of(output: Path) -> Path:
    return output.with_name(output.name + ".part.json")


def leave_part(output: Path, data: bytes, server: ThreadingHTTPServer, validator: str) -> None:
    """A .part file as an earlier run leaves it: the bytes and the validator kept beside them."""
    part_of(output).write_bytes(data)
    state = {"url": url(server), "validator": validator, "etag": validator,
             "last_modified": None, "bytes": len(data)}
    state_of(output).write_text(json.dumps(state))


def test_part_without_kept_validator_starts_over(server, tmp_path, capsys):
    out = tmp_path / "model.bin"
    part_of(out).write_bytes(PAYLOAD[:1000])  # left by an older version: nothing to check it by
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(None, None)]
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 0
    assert "no ETag or Last-Modified kept" in capsys.readouterr().err


def test_stale_part_restarts_when_server_ignores_range(server, tmp_path, capsys):
    out = tmp_path / "model.bin"
    leave_part(out, b"junk from another file" * 100, server, etag_of(PAYLOAD))
    server.plan = ["ignore-range"]
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert server.seen[0]["range"] == f"bytes={22 * 100}-"
    assert len(server.seen) == 1
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 0
    assert "starting over" in capsys.readouterr().err


def test_complete_part_from_earlier_run_is_kept_on_416(server, tmp_path):
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD, server, etag_of(PAYLOAD))
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [s["range"] for s in server.seen] == [f"bytes={len(PAYLOAD)}-"]
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == len(PAYLOAD)
    assert manifest["etag"] == etag_of(PAYLOAD)
    assert not state_of(out).exists()


def test_partial_part_from_earlier_run_is_resumed_with_if_range(server, tmp_path):
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD[:1000], server, etag_of(PAYLOAD))
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [("bytes=1000-", etag_of(PAYLOAD))]
    assert manifest["sha256"] == PAYLOAD_SHA and manifest["resumed_from"] == 1000
    assert not part_of(out).exists() and not state_of(out).exists()


def test_part_of_another_url_starts_over(server, tmp_path):
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD[:1000], server, etag_of(PAYLOAD))
    server.files["/other.bin"] = PAYLOAD
    fetch(url(server, "/other.bin"), out, sha256=PAYLOAD_SHA)
    assert [s["range"] for s in server.seen] == [None]
    assert out.read_bytes() == PAYLOAD


def interrupted_run(server: ThreadingHTTPServer, out: Path) -> None:
    """A first run that ends with half the file in .part (the server hangs up, then fails)."""
    server.plan = ["cut", 500]
    with pytest.raises(DownloadError, match="giving up after 0 retries"):
        fetch(url(server), out, retries=0)
    assert 0 < part_of(out).stat().st_size < len(PAYLOAD)
    server.plan, server.seen = [], []


@pytest.mark.parametrize("validators", [{"etag", "last-modified"}, {"weak-etag", "last-modified"}],
                         ids=["etag", "last-modified"])
def test_file_changed_between_runs_is_fetched_whole(server, tmp_path, capsys, validators):
    server.validators = validators
    out = tmp_path / "model.bin"
    interrupted_run(server, out)
    kept = json.loads(state_of(out).read_text())
    sent = etag_of(PAYLOAD) if "etag" in validators else MODIFIED
    assert kept["validator"] == sent and kept["url"] == url(server)
    assert kept["bytes"] == part_of(out).stat().st_size
    server.files["/model.bin"] = NEW_PAYLOAD  # changed on the server meanwhile
    server.modified["/model.bin"] = "Thu, 22 Oct 2015 07:28:00 GMT"
    manifest = fetch(url(server), out, sha256=NEW_SHA)
    offset = kept["bytes"]
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(f"bytes={offset}-", sent)]
    assert out.read_bytes() == NEW_PAYLOAD  # whole, never the old start joined to the new end
    assert manifest["resumed_from"] == 0
    assert "changed since" in capsys.readouterr().err


def test_unchanged_file_is_resumed_in_a_later_run(server, tmp_path):
    out = tmp_path / "model.bin"
    interrupted_run(server, out)
    offset = part_of(out).stat().st_size
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(f"bytes={offset}-", etag_of(PAYLOAD))]
    assert manifest["resumed_from"] == offset and out.read_bytes() == PAYLOAD


def test_server_ignoring_if_range_is_caught_by_its_etag(server, tmp_path, capsys):
    out = tmp_path / "model.bin"
    interrupted_run(server, out)
    server.files["/model.bin"] = NEW_PAYLOAD
    server.plan = ["ignore-if-range"]  # answers 206 with the new file's bytes and ETag
    manifest = fetch(url(server), out, sha256=NEW_SHA)
    assert [s["range"] for s in server.seen][1:] == [None]
    assert out.read_bytes() == NEW_PAYLOAD and manifest["resumed_from"] == 0
    assert "part of another file" in capsys.readouterr().err


def test_server_without_validators_starts_over_in_a_later_run(server, tmp_path):
    server.validators = set()
    out = tmp_path / "model.bin"
    server.plan = ["cut"]
    with pytest.raises(DownloadError, match="giving up after 0 retries") as err:
        fetch(url(server), out, retries=0)
    assert "kept" not in str(err.value)  # nothing a later run could resume
    assert not state_of(out).exists()
    part_of(out).write_bytes(PAYLOAD[:1000])  # as if killed: a .part file with nothing beside it
    server.files["/model.bin"], server.seen = NEW_PAYLOAD, []
    manifest = fetch(url(server), out, sha256=NEW_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(None, None)]
    assert out.read_bytes() == NEW_PAYLOAD and manifest["resumed_from"] == 0


def test_server_without_validators_never_gets_a_bare_range(server, tmp_path):
    server.validators = set()
    server.plan = ["cut", "cut"]
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA, retries=2)
    assert [s["range"] for s in server.seen] == [None, None, None]
    assert out.read_bytes() == PAYLOAD and manifest["etag"] is None


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


def cli(server: ThreadingHTTPServer, out: Path, manifest: Path, *more: str) -> list[str]:
    return ["--url", url(server), "--output", str(out), "--manifest", str(manifest), *more]


def test_cli_killed_then_file_changed_gives_the_new_file_whole(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    server.plan = ["hang"]  # half the body, then nothing: the job is killed meanwhile
    cmd = [sys.executable, str(REPO / "scripts" / "download.py"), *cli(server, out, manifest)]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (part_of(out).exists() and part_of(out).stat().st_size >= 1 << 20):
            assert first.poll() is None and time.monotonic() < deadline, "no bytes arrived"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)  # as a lost node: no clean-up at all
        first.wait()
    assert not out.exists() and not manifest.exists()
    assert json.loads(state_of(out).read_text())["validator"] == etag_of(PAYLOAD)
    server.files["/model.bin"] = NEW_PAYLOAD
    done = run_cli(*cli(server, out, manifest, "--sha256", NEW_SHA), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert server.seen[1]["if_range"] == etag_of(PAYLOAD) and server.seen[1]["range"]
    assert out.read_bytes() == NEW_PAYLOAD
    assert "changed since" in done.stderr
    recorded = json.loads(manifest.read_text())
    assert recorded["sha256"] == NEW_SHA and recorded["etag"] == etag_of(NEW_PAYLOAD)
    assert not part_of(out).exists() and not state_of(out).exists()


def test_cli_manifest_records_the_source(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    done = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    recorded = json.loads(manifest.read_text())
    assert recorded["source"] == url(server) and recorded["bytes"] == len(PAYLOAD)
    assert recorded["sha256"] == PAYLOAD_SHA and recorded["etag"] == etag_of(PAYLOAD)
    assert recorded["last_modified"] == MODIFIED
    assert recorded["fetched_at"].endswith("+00:00")


def test_cli_second_run_checks_the_output_against_its_manifest(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    assert run_cli(*cli(server, out, manifest), cwd=tmp_path).returncode == 0
    again = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "matches its manifest" in again.stderr
    assert len(server.seen) == 1  # checked, not fetched again


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_cli_output_that_differs_from_its_manifest_fails(server, tmp_path, damage):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    assert run_cli(*cli(server, out, manifest), cwd=tmp_path).returncode == 0
    data = bytearray(PAYLOAD)
    if damage == "flip":
        data[123] ^= 0xFF  # same size: only the sha256 tells
    else:
        del data[-10:]
    out.write_bytes(bytes(data))
    again = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert again.returncode == 1
    err = again.stderr
    assert err.startswith(f"error: {out}: ") and err.count("\n") == 1
    assert ("sha256" if damage == "flip" else "bytes") in err and str(manifest) in err
    assert len(server.seen) == 1
    assert out.read_bytes() == bytes(data)  # left for the user to look at, not replaced


def test_cli_new_source_is_fetched_again(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    assert run_cli(*cli(server, out, manifest), cwd=tmp_path).returncode == 0
    server.files["/new.bin"] = NEW_PAYLOAD
    args = ["--url", url(server, "/new.bin"), "--output", str(out), "--manifest", str(manifest)]
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == NEW_PAYLOAD
    assert json.loads(manifest.read_text())["source"] == url(server, "/new.bin")


def test_cli_unreadable_manifest_fails(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    out.write_bytes(PAYLOAD)
    manifest.write_text("{not json")
    done = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {manifest}: ") and done.stderr.count("\n") == 1
    assert server.seen == []


@pytest.mark.parametrize(
    "source, message",
    [
        ("ftp://127.0.0.1/model.bin", "unsupported URL scheme"),
        ("http:///model.bin", "InvalidURL"),
        ("http://[::1/model.bin", "not a valid URL"),
        ("no/such/file.bin", "no such file"),
    ],
    ids=["scheme", "no-host", "malformed", "missing-path"],
)
def test_cli_bad_source_is_one_line(tmp_path, source, message):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    done = run_cli("--url", source, "--output", str(out), "--manifest", str(manifest), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert not out.exists() and not manifest.exists() and not part_of(out).exists()


def test_cli_unwritable_output_is_one_line(server, tmp_path):
    out = tmp_path / "a-file" / "m.bin"  # its folder is a file
    (tmp_path / "a-file").write_text("")
    done = run_cli("--url", url(server), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {out}: ") and done.stderr.count("\n") == 1, done.stderr


def test_cli_checksum_mismatch_leaves_nothing(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    done = run_cli(*cli(server, out, manifest, "--sha256", NEW_SHA), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {out}: sha256 mismatch") and done.stderr.count("\n") == 1
    assert not out.exists() and not manifest.exists()
    assert not part_of(out).exists() and not state_of(out).exists()


def test_script_runs_as_a_command():
    script = REPO / "scripts" / "download.py"
    assert script.read_text().startswith("#!/usr/bin/env python\n")
    assert os.access(script, os.X_OK)
