"""Fetch one file (HTTP(S) URL, file:// URL or local path) safely and resumably.

The output only ever appears complete: bytes go to ``<output>.part`` and are moved
into place with ``os.replace`` after the size and sha256 checks pass. An interrupted
HTTP transfer resumes from the .part file with a ``Range`` request, also in a later run.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests
from tqdm import tqdm

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


class _Retry(Exception):
    """An attempt failed in a way that another attempt may fix (5xx, short body, ...)."""


def download(
    url_or_path: str,
    output: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool = True,
) -> dict:
    """Download ``url_or_path`` to ``output``; return a manifest dict.

    ``resumed_from`` is the byte offset the final, successful transfer started at:
    0 unless it continued a .part file with a Range request.
    """
    output = Path(output)
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
        # Caught before the transfer, not after hours of it.
        raise DownloadError(f"{output}: expected sha256 {sha256!r} is not 64 hex digits")
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    start = time.monotonic()
    scheme = urlsplit(url_or_path).scheme.lower()
    if scheme in ("http", "https"):
        digest, resumed_from = _fetch_http(
            url_or_path, part, size, retries, backoff, timeout, progress
        )
    elif scheme in ("", "file") or len(scheme) == 1:  # 1 letter: a Windows drive, C:\...
        digest, resumed_from = _copy_local(_local_path(url_or_path), part, progress)
    else:
        raise DownloadError(f"{url_or_path}: unsupported URL scheme {scheme!r}")
    nbytes = part.stat().st_size
    _check(url_or_path, output, part, nbytes, digest, size, sha256)
    os.replace(part, output)
    return {
        "source": url_or_path,
        "output": str(output),
        "bytes": nbytes,
        "sha256": digest,
        "seconds": round(time.monotonic() - start, 3),
        "resumed_from": resumed_from,
    }


def _check(
    source: str,
    output: Path,
    part: Path,
    nbytes: int,
    digest: str,
    size: int | None,
    sha256: str | None,
) -> None:
    """Delete the .part file and fail if it is not the file we were promised."""
    if size is not None and nbytes != size:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{output}: size mismatch (from {source}): expected {size} bytes, got {nbytes}"
        )
    want = None if sha256 is None else sha256.strip().lower()
    if want is not None and digest != want:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{output}: sha256 mismatch (from {source}): expected {want}, got {digest}"
        )


def _progress_bar(name: str, total: int | None, initial: int, progress: bool) -> tqdm:
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


def _sync(f: BinaryIO) -> None:
    # fsync before the rename, so a crash cannot leave a complete-looking but empty file.
    f.flush()
    os.fsync(f.fileno())


# --- local files -------------------------------------------------------------------


def _local_path(url_or_path: str) -> Path:
    parts = urlsplit(url_or_path)
    if parts.scheme.lower() != "file":
        return Path(url_or_path)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(f"{url_or_path}: file:// URLs on another host are not supported")
    return Path(url2pathname(unquote(parts.path)))


def _copy_local(src: Path, part: Path, progress: bool) -> tuple[str, int]:
    if not src.is_file():
        raise DownloadError(f"{src}: no such file")
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
            with _progress_bar(part.name, src.stat().st_size, 0, progress) as bar:
                while chunk := fin.read(CHUNK):
                    fout.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            _sync(fout)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{src}: copy to {part} failed: {e}") from e
    return h.hexdigest(), 0


# --- HTTP ---------------------------------------------------------------------------


def _hash_file(path: Path) -> tuple[hashlib._Hash, int]:
    """sha256 state and length of what an earlier attempt or run left in ``path``."""
    h, n = hashlib.sha256(), 0
    if path.exists():
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
    return h, n


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


def _plan(r: requests.Response, url: str, offset: int, part: Path) -> tuple[int, int | None]:
    """Judge a response: return (first byte it carries, total file size if known).

    Raises DownloadError for answers no retry can fix and _Retry for the others.
    """
    code = f"HTTP {r.status_code} {r.reason}"
    if r.status_code == 416 and offset:
        _, total = _content_range(r.headers.get("Content-Range"))
        if total == offset:  # the .part file already holds the whole file
            return offset, total
        part.unlink(missing_ok=True)  # not a prefix of the file the server has
        raise _Retry(f"{code} for bytes={offset}- (server size {total}); restarting")
    if r.status_code >= 500 or r.status_code in RETRYABLE_4XX:
        raise _Retry(code)
    if r.status_code != 200 and r.status_code != 206:
        raise DownloadError(f"{url}: {code}")
    if r.status_code == 200:
        # The server ignored the Range (or If-Range saw a changed file): start over.
        return 0, _int_header(r.headers.get("Content-Length"))
    first, total = _content_range(r.headers.get("Content-Range"))
    if first != offset:
        part.unlink(missing_ok=True)
        raise _Retry(f"asked for bytes={offset}- but got Content-Range start {first}")
    return offset, total


def _fetch_http(
    url: str,
    part: Path,
    size: int | None,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
) -> tuple[str, int]:
    """Fill ``part`` from ``url``; return (sha256 hex, offset of the final transfer)."""
    # Invariant between attempts: h is the sha256 of the first ``hashed`` bytes of part.
    h, hashed = hashlib.sha256(), 0
    validator: str | None = None  # ETag/Last-Modified, so a changed file is never spliced
    failures = 0
    # identity: lengths and Range offsets then count stored bytes, not gzip bytes.
    base_headers = {"Accept-Encoding": "identity"}
    with requests.Session() as session:
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if size is not None and offset > size:
                part.unlink()  # longer than the wanted file: cannot be a prefix of it
                offset = 0
            if offset != hashed:
                h, hashed = _hash_file(part)
            headers = dict(base_headers)
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if validator:
                    headers["If-Range"] = validator
            try:
                with session.get(
                    url, headers=headers, stream=True, timeout=(timeout, timeout)
                ) as r:
                    first, total = _plan(r, url, offset, part)
                    if r.status_code == 416:  # _plan found the .part file already complete
                        return h.hexdigest(), offset
                    if size is not None and total is not None and total != size:
                        raise DownloadError(f"{url}: server reports {total} bytes, expected {size}")
                    if first == 0:
                        h, hashed = hashlib.sha256(), 0
                    etag = r.headers.get("ETag")
                    strong = etag if etag and not etag.startswith("W/") else None
                    validator = strong or r.headers.get("Last-Modified") or validator
                    with (
                        open(part, "ab" if first else "wb") as f,
                        _progress_bar(part.name, total, first, progress) as bar,
                    ):
                        try:
                            for chunk in r.iter_content(CHUNK):
                                f.write(chunk)
                                h.update(chunk)
                                hashed += len(chunk)
                                bar.update(len(chunk))
                        finally:
                            _sync(f)  # keep what arrived: the next attempt resumes from it
                    encoded = r.headers.get("Content-Encoding", "identity") != "identity"
                    if total is not None and not encoded and hashed < total:
                        raise _Retry(f"body ended after {hashed} of {total} bytes")
                    return h.hexdigest(), first
            except (_Retry, *RETRYABLE_ERRORS) as e:
                reason = str(e) if isinstance(e, _Retry) else f"{type(e).__name__}: {e}"
            except requests.RequestException as e:  # bad URL and the like: retrying won't help
                raise DownloadError(f"{url}: {type(e).__name__}: {e}") from e
            now = part.stat().st_size if part.exists() else 0
            # An attempt that moved the file forward resets the budget, so flaky links finish.
            failures = 0 if now > offset else failures + 1
            if failures > retries:
                kept = f"; {now} bytes kept in {part} for a later resume" if now else ""
                raise DownloadError(f"{url}: giving up after {retries} retries: {reason}{kept}")
            if failures:
                time.sleep(min(backoff * 2 ** (failures - 1), MAX_SLEEP))
