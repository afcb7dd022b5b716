#!/usr/bin/env python
"""Where an engine's time goes: one of peers.py's engines run again on a kept work folder
(peers.py --workdir DIR), at one batch size, under `perf record`; prints the functions that
took at least --percent_limit of its CPU samples, by library (model loading and the warm-up
included: a few % of the run).

    .venv/bin/python benchmarks/peers.py --real_width --workdir /tmp/rw      # once
    .venv/bin/python benchmarks/profile_engine.py --workdir /tmp/rw --engine "ct2 int8" --batch 1

Needs Linux perf (`apt-get install linux-perf`) and the permission to sample (root, or
kernel.perf_event_paranoid <= 1).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import common
import peers


def main() -> None:
    engines = {**peers.INFERENCE, **peers.CT2_OPTIONS, **peers.MORE_OPTIONS}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, required=True, help="a work folder kept by peers.py")
    p.add_argument("--engine", required=True, choices=sorted(engines))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new_tokens", type=int, default=32)
    p.add_argument("--percent_limit", type=float, default=1.0)
    a = p.parse_args()
    if shutil.which("perf") is None:
        sys.exit("error: no `perf` on PATH (apt-get install linux-perf)")
    manifest_path = a.workdir / "prepare.out.json"
    if not manifest_path.is_file():
        sys.exit(f"error: {manifest_path}: not there; run peers.py --workdir {a.workdir} first")
    manifest = json.loads(manifest_path.read_text())
    engine = engines[a.engine]
    if engine.model not in manifest:
        sys.exit(f"error: {a.engine}: its model ({engine.model}) is not in {a.workdir}")
    threads = engine.threads or a.threads
    spec = {"model": manifest[engine.model], "hf": manifest["hf"], "tokenizer": manifest["tokenizer"],
            "prompts": manifest["prompts"], "new_tokens": a.new_tokens, "batches": [a.batch],
            "threads": threads, **engine.spec}
    name = f"profile_b{a.batch}_" + "".join(c if c.isalnum() else "_" for c in a.engine)
    spec_path, out, data = (a.workdir / f"{name}.{x}" for x in ("spec.json", "out.json", "perf.data"))
    spec_path.write_text(json.dumps(spec))
    cmd = ["perf", "record", "-F", "499", "-o", str(data), "--", sys.executable,
           str(common.BENCHMARKS / f"{engine.driver}.py"), str(spec_path), str(out)]
    subprocess.run(cmd, check=True, env=common.thread_env(threads, **engine.env),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    print(f"{a.engine}, batch {a.batch}, {threads} threads: {result['rates'][str(a.batch)]:.1f} tok/s "
          f"end to end, decode {result.get('decode_rates', {}).get(str(a.batch), 0):.1f} tok/s "
          "(under perf)")
    print(perf_report(data, a.percent_limit))


def perf_report(data: Path, percent_limit: float) -> str:
    """Samples by library, then by function (JIT code, e.g. oneDNN's generated GEMM kernels, has
    no symbols: its addresses are grouped into one line per 4 KiB page)."""
    lines = []
    for sort in ("dso", "dso,symbol"):
        out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", sort,
                              "--percent-limit", str(percent_limit)], capture_output=True,
                             text=True, check=True).stdout
        rows = [" ".join(line.split()) for line in out.splitlines()
                if line.strip() and not line.startswith("#")]
        if sort == "dso,symbol":  # fold JIT addresses by page
            pages: dict[str, float] = {}
            kept = []
            for row in rows:
                share, _, rest = row.partition(" ")
                if rest.startswith("[JIT]") and "0x" in rest:
                    page = rest.split("0x", 1)[1].split()[0][:-3]
                    pages[page] = pages.get(page, 0.0) + float(share.rstrip("%"))
                else:
                    kept.append(row)
            rows = [f"{v:.2f}% [JIT] code at 0x{p}xxx" for p, v in pages.items()] + kept
        lines += [f"by {sort}:"] + [f"  {row[:140]}" for row in rows]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
