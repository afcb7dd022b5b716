"""The HTTP transfer under vicuna.data.download: one file into its ``.part`` file, with retries,
resumed when it can be.

An interrupted HTTP transfer resumes from the .part file, also in a later run, but only
when the server confirms it still has the same file: the strong ETag (else Last-Modified)
seen when the .part file was started is kept in ``<output>.part.json`` and sent as
``If-Range``. A 200 answer starts the transfer over: the file changed (its ETag or
Last-Modified says so), or the server ignores Range (they are the kept ones); a .part file
without a kept validator is never resumed, so old and new bytes are never joined.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
from tqdm import tqdm

from vicuna.files import write_json

CHUNK = 1 << 20  # 1 MiB: large enough to keep syscall and hashing overhead small
MAX_SLEEP = 60.0  # cap on the exponential backoff between attempts
# 408/429 are client errors that mean "try again later", not "this will never work".
RETRYABLE_4XX = {408, 429}
RETRYABLE_ERRORS = (
    requests.ConnectionError,  # refused, reset, and read timeouts raised mid-body
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # body shorter than Content-Length
)


class DownloadError(Exception):
    """A download that failed for good; the message is one line naming the source."""

    def __init__(self, message: str) -> None:
        # Exception texts from requests/urllib3 may hold newlines: a log line stays one line.
        super().__init__(" ".join(message.split()))


class _Retry(Exception):
    """An attempt failed in a way that another attempt may fix (5xx, short body, ...)."""


def log(message: str) -> None:
    print(f"download: {message}", file=sys.stderr, flush=True)


@dataclass
class Fetched:
    """What a transfer produced: the .part file's sha256 and what the server said about it."""

    sha256: str
    resumed_from: int = 0  # byte offset the final, successful transfer started at
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Patience:
    """How long an HTTP transfer waits and how often it tries again."""

    retries: int  # failures in a row (no byte gained) before giving up
    backoff: float  # seconds before the first retry, doubled at each one (MAX_SLEEP at most)
    timeout: float  # seconds to connect, and between two reads


def progress_bar(name: str, total: int | None, initial: int, progress: bool) -> tqdm:
    # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI).
    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=None if progress else True,
        leave=False,
    )


def sync(f: BinaryIO) -> None:
    # fsync before the rename, so a crash cannot leave a complete-looking but empty file.
    f.flush()
    os.fsync(f.fileno())


def hash_file(path: Path) -> tuple[Any, int]:
    """sha256 state and length of ``path`` (nothing if it is missing)."""
    h, n = hashlib.sha256(), 0
    if path.exists():
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
    return h, n


# --- HTTP: what is kept next to the .part file --------------------------------------


@dataclass
class PartState:
    """What ``<output>.part.json`` keeps, so that a later run resumes only the same file."""

    url: str
    validator: str  # the If-Range value: the strong ETag, else Last-Modified
    etag: str | None
    last_modified: str | None
    bytes: int = 0  # what the .part file held when this was last written


def state_file(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _load_state(part: Path, url: str) -> PartState | None:
    """The kept validator of ``part``, if it was started from ``url``."""
    try:
        data = json.loads(state_file(part).read_text(encoding="utf-8"))
        state = PartState(**data)
    except (OSError, ValueError, TypeError):  # missing, half-written or another format
        return None
    return state if state.url == url and state.validator else None


def _save_state(part: Path, state: PartState, nbytes: int) -> None:
    state.bytes = nbytes
    write_json(state_file(part), asdict(state))


def forget_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    state_file(part).unlink(missing_ok=True)


def _validators(r: requests.Response) -> tuple[str | None, str | None]:
    """(strong ETag, Last-Modified) of a response; a weak ETag cannot serve for If-Range."""
    etag = r.headers.get("ETag")
    strong = etag if etag and not etag.startswith("W/") else None
    return strong, r.headers.get("Last-Modified")


def _new_state(url: str, r: requests.Response) -> PartState | None:
    etag, modified = _validators(r)
    validator = etag or modified
    return PartState(url, validator, etag, modified) if validator else None


def _changed_validator(state: PartState, r: requests.Response) -> str | bool | None:
    """How a response's validators differ from the kept ones ("ETag ... now ..."); False if
    they agree; None if there is nothing to compare."""
    etag, modified = _validators(r)
    for name, old, new in (("ETag", state.etag, etag), ("Last-Modified", state.last_modified, modified)):
        if old and new:
            return False if old == new else f"{name} {old}, now {new}"
    return None


def _same_file(state: PartState, r: requests.Response) -> bool:
    """Whether a 206 answer's validators agree with the kept ones (for servers that ignore
    If-Range: a changed ETag or date then still shows)."""
    return not _changed_validator(state, r)


# --- HTTP: the transfer -------------------------------------------------------------


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """Parse 'bytes 100-199/1000' or 'bytes */1000' into (first byte, total size)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes ") :].partition("/")
    try:
        first = None if span.strip() == "*" else int(span.split("-")[0])
        return first, None if total.strip() in ("", "*") else int(total)
    except ValueError:
        return None, None


def _int_header(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


class _Transfer:
    """Fills ``part`` from ``url`` over several attempts (and runs)."""

    def __init__(self, url: str, part: Path, size: int | None, progress: bool) -> None:
        self.url, self.part, self.size, self.progress = url, part, size, progress
        self.state = _load_state(part, url)
        # Invariant between attempts: h is the sha256 of the first ``hashed`` bytes of part.
        self.h, self.hashed = hashlib.sha256(), 0

    def restart(self, why: str | None) -> None:
        if why:
            log(why)
        forget_part(self.part)
        self.state = None
        self.h, self.hashed = hashlib.sha256(), 0

    def offset(self) -> int:
        """Where the next request starts: the end of a .part file that may be resumed, else 0."""
        n = self.part.stat().st_size if self.part.exists() else 0
        if n and self.state is None:
            self.restart(
                f"{self.part}: no ETag or Last-Modified kept for it, so it cannot be checked"
                " against the server's file: starting over"
            )
            return 0
        if self.size is not None and n > self.size:
            self.restart(f"{self.part} is longer than the expected {self.size} bytes: starting over")
            return 0
        if n != self.hashed:
            self.h, self.hashed = hash_file(self.part)
        return n

    def headers(self, offset: int) -> dict[str, str]:
        # identity: lengths and Range offsets then count stored bytes, not gzip bytes.
        headers = {"Accept-Encoding": "identity"}
        if offset and self.state is not None:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = self.state.validator  # never a bare Range: no splice
        return headers

    def plan(self, r: requests.Response, offset: int) -> tuple[int, int | None]:
        """Judge a response: return (first byte it carries, total file size if known).

        Raises DownloadError for answers no retry can fix and _Retry for the others.
        """
        code = f"HTTP {r.status_code} {r.reason}"
        if r.status_code == 416 and offset:
            _, total = _content_range(r.headers.get("Content-Range"))
            if total == offset:  # the .part file already holds the whole file
                return offset, total
            self.restart(None)  # not a prefix of the file the server has
            raise _Retry(f"{code} for bytes={offset}- (server size {total}); restarting")
        if r.status_code >= 500 or r.status_code in RETRYABLE_4XX:
            raise _Retry(code)
        if r.status_code not in (200, 206):
            raise DownloadError(f"{self.url}: {code}")
        if r.status_code == 200:
            if offset:
                self.restart(self._whole_file(r, offset))
            return 0, _int_header(r.headers.get("Content-Length"))
        first, total = _content_range(r.headers.get("Content-Range"))
        if not offset and first == 0:  # a capped first answer (a CDN): a fresh start all the same
            return 0, total
        if not offset or self.state is None or not _same_file(self.state, r):
            self.restart(f"{self.url}: the server sent part of another file: starting over")
            raise _Retry("206 answer with other validators; restarting")
        if first != offset:
            self.restart(None)
            raise _Retry(f"asked for bytes={offset}- but got Content-Range start {first}")
        return offset, total

    def _whole_file(self, r: requests.Response, offset: int) -> str:
        """Why a ranged request got the whole file (200): the file changed (If-Range), or the
        server ignores Range (the same validators as the .part file's)."""
        kept = self.state.validator if self.state else None
        changed = _changed_validator(self.state, r) if self.state else None
        if changed is False:
            return (f"{self.url}: the server ignores Range: starting over (it sent the whole file,"
                    f" unchanged, to bytes={offset}-)")
        if changed:
            return (f"{self.url} changed since {self.part} was started ({changed}; the server"
                    f" sent the whole file to If-Range {kept}): starting over")
        return (f"{self.url}: the server sent the whole file to bytes={offset}- with If-Range"
                f" {kept} (it ignores Range, or the file changed): starting over")

    def receive(self, r: requests.Response, offset: int) -> Fetched:
        first, total = self.plan(r, offset)
        if r.status_code == 416:  # plan found the .part file already complete
            return self._fetched(offset)
        if self.size is not None and total is not None and total != self.size:
            raise DownloadError(f"{self.url}: server reports {total} bytes, expected {self.size}")
        if first == 0:
            self._start(r)
        with (
            open(self.part, "ab" if first else "wb") as f,
            progress_bar(self.part.name, total, first, self.progress) as bar,
        ):
            try:
                for chunk in r.iter_content(CHUNK):
                    f.write(chunk)
                    self.h.update(chunk)
                    self.hashed += len(chunk)
                    bar.update(len(chunk))
            finally:
                sync(f)  # keep what arrived: the next attempt resumes from it
                if self.state is not None:
                    _save_state(self.part, self.state, self.hashed)
        encoded = r.headers.get("Content-Encoding", "identity") != "identity"
        if total is not None and not encoded and self.hashed < total:
            raise _Retry(f"body ended after {self.hashed} of {total} bytes")
        return self._fetched(first)

    def _start(self, r: requests.Response) -> None:
        """A transfer from byte 0: keep this answer's validator before any byte is written."""
        self.h, self.hashed = hashlib.sha256(), 0
        self.state = _new_state(self.url, r)
        if self.state is None:
            state_file(self.part).unlink(missing_ok=True)
            log(f"{self.url} sends no ETag or Last-Modified: an interrupted transfer starts over")
        else:
            _save_state(self.part, self.state, 0)

    def _fetched(self, first: int) -> Fetched:
        state = self.state
        return Fetched(
            self.h.hexdigest(),
            first,
            state.etag if state else None,
            state.last_modified if state else None,
        )


def fetch_http(url: str, part: Path, size: int | None, patience: Patience,
                progress: bool) -> Fetched:
    """Fill ``part`` from ``url``, retrying transient failures with backoff."""
    transfer = _Transfer(url, part, size, progress)
    failures = 0
    with requests.Session() as session:
        while True:
            offset = transfer.offset()
            try:
                with session.get(
                    url, headers=transfer.headers(offset), stream=True,
                    timeout=(patience.timeout, patience.timeout)
                ) as r:
                    return transfer.receive(r, offset)
            except (_Retry, *RETRYABLE_ERRORS) as e:
                reason = str(e) if isinstance(e, _Retry) else f"{type(e).__name__}: {e}"
            except requests.RequestException as e:  # bad URL and the like: retrying won't help
                raise DownloadError(f"{url}: {type(e).__name__}: {e}") from e
            now = part.stat().st_size if part.exists() else 0
            # An attempt that moved a resumable file forward resets the budget, so flaky links
            # finish; without a validator nothing is resumed, so nothing counts as progress.
            progressed = transfer.state is not None and now > offset
            failures = 0 if progressed else failures + 1
            if failures > patience.retries:
                raise DownloadError(f"{url}: giving up after {patience.retries} retries: {reason}"
                                    + _kept(transfer, now))
            if failures:
                time.sleep(min(patience.backoff * 2 ** (failures - 1), MAX_SLEEP))


def _kept(transfer: _Transfer, nbytes: int) -> str:
    """The end of the giving-up message: what a later run can resume, if anything."""
    if nbytes and transfer.state is not None:
        return f"; {nbytes} bytes kept in {transfer.part} for a later resume"
    transfer.restart(None)  # without a validator a later run could not use it
    return ""
