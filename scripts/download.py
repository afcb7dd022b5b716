#!/usr/bin/env python
"""Download one file with size/sha256 checks and resume; optionally write a JSON manifest.

python scripts/download.py --url URL_OR_PATH --output FILE [--sha256 HEX] [--size N]
                           [--manifest FILE.json] [--retries N] [--corpus]

With --manifest, an output that is already there with its manifest is checked against it
(size, sha256) rather than downloaded again; a mismatch is an error. With --corpus, a file
that holds no example (0 bytes, or blank lines only) is an error, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.data.download import DownloadError, fetch, log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="http(s):// or file:// URL, or a local path")
    p.add_argument("--output", required=True, type=Path, help="file to create")
    p.add_argument("--sha256", help="expected sha256 (hex) of the file")
    p.add_argument("--size", type=int, help="expected size of the file in bytes")
    p.add_argument("--manifest", type=Path,
                   help="JSON manifest of the download (source, bytes, sha256, ETag, time)")
    p.add_argument("--retries", type=int, default=5, help="retries on transient errors")
    p.add_argument("--corpus", action="store_true",
                   help="the file is a corpus, one example a line: refuse one with no example")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        manifest, fetched = fetch(
            args.url, args.output, manifest=args.manifest, sha256=args.sha256, size=args.size,
            retries=args.retries, corpus=args.corpus,
        )
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    done = "downloaded" if fetched else "already there, matches its manifest"
    log(f"{args.output}: {done} ({manifest['bytes']} bytes, sha256 {manifest['sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
