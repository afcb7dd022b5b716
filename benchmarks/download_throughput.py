"""Throughput of vicuna.data.download.download() from a local HTTP server (and a local copy).

    .venv/bin/python benchmarks/download_throughput.py [--size-mb 200] [--repeat 3]

The server runs in a separate process so it does not share the client's GIL; the
figure includes streaming, sha256, writing and fsync of the output.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import multiprocessing
import os
import tempfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vicuna.data.download import download


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: str, conn) -> None:
    handler = functools.partial(QuietHandler, directory=directory)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    conn.send(httpd.server_port)
    httpd.serve_forever()


def make_file(path: Path, size_mb: int) -> str:
    # One random MiB repeated: incompressible on the wire, and cheap to generate.
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size_mb * (1 << 20) // len(block)):
            f.write(block)
            h.update(block)
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=200, help="file size in MiB")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per source")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "served" / "blob.bin"
        src.parent.mkdir()
        sha = make_file(src, args.size_mb)
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.Process(target=serve, args=(str(src.parent), child), daemon=True)
        proc.start()
        try:
            url = f"http://127.0.0.1:{parent.recv()}/blob.bin"
            for label, source in (("http", url), ("local copy", str(src))):
                rates = []
                for i in range(args.repeat):
                    out = Path(tmp) / f"out-{i}.bin"
                    m = download(source, out, sha256=sha, progress=False)
                    rates.append(m["bytes"] / 1e6 / m["seconds"])
                    out.unlink()
                size = src.stat().st_size / 1e6
                print(
                    f"{label}: {size:.0f} MB, best {max(rates):.0f} MB/s, "
                    f"median {sorted(rates)[len(rates) // 2]:.0f} MB/s over {args.repeat} runs"
                )
        finally:
            proc.terminate()
            proc.join()


if __name__ == "__main__":
    main()
