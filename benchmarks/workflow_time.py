#!/usr/bin/env python
"""Time the workflow's `all` on a config from nothing, in a fresh folder, and print the
wall time with each heavy rule's own time (from its `benchmark:` file).

    .venv/bin/python benchmarks/workflow_time.py [--configfile config.yaml] [--profile profiles/local]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    p.add_argument("--profile", type=Path, default=REPO / "profiles" / "local")
    p.add_argument("--keep", action="store_true", help="keep the run folder")
    a = p.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    workdir = Path(tempfile.mkdtemp(prefix="vicuna-bench-"))
    cmd = [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           f"--configfile={a.configfile.resolve()}", "--profile", str(a.profile.resolve()), "--", "all"]
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"workflow failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    print(f"`all` from nothing: {wall:.1f} s wall ({os.cpu_count()} CPUs)")
    for tsv in sorted((workdir / "benchmarks" / "results").glob("*.tsv")):
        with open(tsv) as f:
            row = list(csv.DictReader(f, delimiter="\t"))[-1]
        print(f"  {tsv.stem:<24} {float(row['s']):7.1f} s  max RSS {float(row['max_rss']):7.0f} MB")
    if a.keep:
        print(f"run folder: {workdir}")
    else:
        subprocess.run(["rm", "-rf", str(workdir)], check=True)


if __name__ == "__main__":
    main()
