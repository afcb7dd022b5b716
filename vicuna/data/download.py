"""Fetch one file (HTTP(S) URL, file:// URL or local path) safely and resumably.

The output only ever appears complete: bytes go to ``<output>.part`` and are moved
into place with ``os.replace`` after the size and sha256 checks pass.

An interrupted HTTP transfer resumes from the .part file, also in a later run, but only
when the server confirms it still has the same file (vicuna.data.http_resume).

``fetch`` adds a manifest (source, bytes, sha256, ETag, Last-Modified, time): when the output
and its manifest are both there, the output is checked against it instead of trusted.

A corpus (``corpus=True``: one example a line) that arrives with no example in it, 0 bytes or
blank lines only, is refused like a checksum mismatch: nothing is moved into place.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from vicuna.data.http_resume import (
    CHUNK,
    DownloadError,
    Fetched,
    Patience,
    fetch_http,
    forget_part,
    hash_file,
    log,
    progress_bar,
    state_file,
    sync,
)
from vicuna.files import no_example, write_json

__all__ = ["DownloadError", "download", "fetch", "log", "verify"]


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
    corpus: bool = False,
) -> dict[str, Any]:
    """Download ``url_or_path`` to ``output``; return a manifest dict. With ``corpus``, a file
    with no example (no line that holds more than white space) is an error.

    ``resumed_from`` is the byte offset the final, successful transfer started at:
    0 unless it continued a .part file with a Range request.
    """
    output = Path(output)
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
        # Caught before the transfer, not after hours of it.
        raise DownloadError(f"{output}: expected sha256 {sha256!r} is not 64 hex digits")
    part = output.with_name(output.name + ".part")
    start = time.monotonic()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        patience = Patience(retries, backoff, timeout)
        got = _fetch_any(url_or_path, part, size, patience, progress)
        nbytes = part.stat().st_size
        _check(url_or_path, output, part, nbytes, got.sha256, size, sha256)
        if corpus and (why := no_example(part)):
            forget_part(part)
            raise DownloadError(f"{url_or_path}: the corpus holds no example ({why}): nothing "
                                f"written to {output}")
        os.replace(part, output)
    except OSError as e:  # unwritable folder, output is a directory, disk full, ...
        raise DownloadError(f"{output}: {e.strerror or e} (from {url_or_path})") from e
    state_file(part).unlink(missing_ok=True)
    return {
        "source": url_or_path,
        "output": str(output),
        "bytes": nbytes,
        "sha256": got.sha256,
        "etag": got.etag,
        "last_modified": got.last_modified,
        "fetched_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - start, 3),
        "resumed_from": got.resumed_from,
    }


def _fetch_any(url_or_path: str, part: Path, size: int | None, patience: Patience,
               progress: bool) -> Fetched:
    try:
        scheme = urlsplit(url_or_path).scheme.lower()
    except ValueError as e:  # e.g. "Invalid IPv6 URL"
        raise DownloadError(f"{url_or_path}: not a valid URL: {e}") from e
    if scheme in ("http", "https"):
        return fetch_http(url_or_path, part, size, patience, progress)
    if scheme in ("", "file") or len(scheme) == 1:  # 1 letter: a Windows drive, C:\...
        return _copy_local(_local_path(url_or_path), part, progress)
    raise DownloadError(f"{url_or_path}: unsupported URL scheme {scheme!r}")


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
        forget_part(part)
        raise DownloadError(
            f"{output}: size mismatch (from {source}): expected {size} bytes, got {nbytes}"
        )
    want = None if sha256 is None else sha256.strip().lower()
    if want is not None and digest != want:
        forget_part(part)
        raise DownloadError(
            f"{output}: sha256 mismatch (from {source}): expected {want}, got {digest}"
        )


# --- manifest ------------------------------------------------------------------------


def fetch(
    url_or_path: str, output: Path, *, manifest: Path | None = None, **kwargs: Any
) -> tuple[dict[str, Any], bool]:
    """``download`` plus a JSON manifest; return (manifest, whether anything was fetched).

    An output that its manifest describes (same source, expected size and sha256 if given)
    is checked, not fetched again: a size or sha256 that differs from the manifest is an
    error, never silently trusted.
    """
    output = Path(output)
    if manifest is None:
        return download(url_or_path, output, **kwargs), True
    manifest = Path(manifest)
    if output.exists() and manifest.exists():
        recorded = _read_manifest(manifest)
        if _describes(recorded, url_or_path, kwargs.get("sha256"), kwargs.get("size"), manifest):
            verify(output, recorded, manifest)
            return recorded, False
    # The old manifest goes first: a job killed after the new output is in place must not
    # leave a manifest that describes the old file.
    manifest.unlink(missing_ok=True)
    recorded = download(url_or_path, output, **kwargs)
    try:
        write_json(manifest, recorded)
    except OSError as e:
        raise DownloadError(f"{manifest}: cannot write the manifest: {e.strerror or e}") from e
    return recorded, True


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DownloadError(f"{path}: unreadable manifest ({type(e).__name__}): remove it") from e
    if not isinstance(data, dict) or not isinstance(data.get("bytes"), int) or not data.get("sha256"):
        raise DownloadError(f"{path}: not a download manifest (no bytes or sha256): remove it")
    return data


def _describes(
    recorded: dict[str, Any], source: str, sha256: str | None, size: int | None, manifest: Path
) -> bool:
    """Whether the manifest is of the file now asked for (else it is fetched again)."""
    if recorded.get("source") != source:
        log(f"{manifest} is of {recorded.get('source')}, now asked for {source}: fetching again")
        return False
    if sha256 is not None and sha256.strip().lower() != recorded["sha256"]:
        log(f"{manifest} records sha256 {recorded['sha256']}, now asked for {sha256}: fetching again")
        return False
    if size is not None and size != recorded["bytes"]:
        log(f"{manifest} records {recorded['bytes']} bytes, now asked for {size}: fetching again")
        return False
    return True


def verify(output: Path, recorded: dict[str, Any], manifest: Path) -> None:
    """Fail unless ``output`` has the size and sha256 its manifest records."""
    nbytes = output.stat().st_size
    if nbytes != recorded["bytes"]:
        raise DownloadError(
            f"{output}: {nbytes} bytes, but its manifest {manifest} records {recorded['bytes']}"
            " (changed since it was downloaded? remove both to download again)"
        )
    digest = hash_file(output)[0].hexdigest()
    if digest != recorded["sha256"]:
        raise DownloadError(
            f"{output}: sha256 {digest}, but its manifest {manifest} records {recorded['sha256']}"
            " (changed since it was downloaded? remove both to download again)"
        )


# --- local files -------------------------------------------------------------------


def _local_path(url_or_path: str) -> Path:
    parts = urlsplit(url_or_path)
    if parts.scheme.lower() != "file":
        return Path(url_or_path)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(f"{url_or_path}: file:// URLs on another host are not supported")
    return Path(url2pathname(unquote(parts.path)))


def _copy_local(src: Path, part: Path, progress: bool) -> Fetched:
    if not src.is_file():
        raise DownloadError(f"{src}: no such file")
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
            with progress_bar(part.name, src.stat().st_size, 0, progress) as bar:
                while chunk := fin.read(CHUNK):
                    fout.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            sync(fout)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{src}: copy to {part} failed: {e}") from e
    return Fetched(h.hexdigest())
