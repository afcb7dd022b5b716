"""A real HTTP server on 127.0.0.1 serving chosen bytes, with the faults the download tests ask
for (cuts, 5xx, stalls, servers that ignore Range): the `server` fixture and what it serves."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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
