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
    name = "profile_" + "".join(c if c.isalnum() else "_" for c in a.engine)
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
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso,symbol",
                             "--percent-limit", str(a.percent_limit)], capture_output=True,
                            text=True, check=True).stdout
    print("\n".join(line for line in report.splitlines() if line.strip() and not
                    line.startswith("# ") or line.startswith("# Samples")))


if __name__ == "__main__":
    main()
