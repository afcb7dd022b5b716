#!/usr/bin/env python
"""Download one file with size/sha256 checks and resume; optionally write a JSON manifest.

python scripts/download.py --url URL_OR_PATH --output FILE [--sha256 HEX] [--size N]
                           [--manifest FILE.json] [--retries N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vicuna.download import DownloadError, download


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="http(s):// or file:// URL, or a local path")
    p.add_argument("--output", required=True, type=Path, help="file to create")
    p.add_argument("--sha256", help="expected sha256 (hex) of the file")
    p.add_argument("--size", type=int, help="expected size of the file in bytes")
    p.add_argument("--manifest", type=Path, help="write a JSON manifest of the download here")
    p.add_argument("--retries", type=int, default=5, help="retries on transient errors")
    return p.parse_args(argv)


def write_json(path: Path, data: dict) -> None:
    # temp + rename: a reader (or Snakemake) never sees a half-written manifest.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        manifest = download(
            args.url, args.output, sha256=args.sha256, size=args.size, retries=args.retries
        )
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.manifest:
        write_json(args.manifest, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
