#!/usr/bin/env python
"""Time scripts/flatten_dataset.py on generated files of 50,000 records (alpaca, ShareGPT).

    .venv/bin/python benchmarks/flatten_speed.py [--records 50000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=50_000)
    a = p.parse_args()
    from vicuna.tiny import synthetic

    sets = synthetic.generate(3, a.records, a.records, 1, 1)
    with tempfile.TemporaryDirectory() as d:
        for fmt, records in (("alpaca", sets["alpaca"]), ("sharegpt", sets["sharegpt"])):
            src, out = Path(d) / f"{fmt}.json", Path(d) / f"{fmt}.txt"
            src.write_text(json.dumps(records))
            start = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "scripts" / "flatten_dataset.py"),
                            "--format", fmt, str(src), str(out)], check=True, capture_output=True)
            seconds = time.perf_counter() - start
            lines = sum(1 for _ in out.open(encoding="utf-8"))
            print(f"{fmt}: {len(records):,} records -> {lines:,} lines in {seconds:.2f} s "
                  f"({src.stat().st_size / 1e6:.1f} MB in; Python start-up included)")


if __name__ == "__main__":
    main()
