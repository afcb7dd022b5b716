#!/usr/bin/env python
"""Flatten raw alpaca or ShareGPT JSON (an array or JSON lines) into OpenNMT-py's text:
one example a line, every "\\n" written as ｟newline｠. ShareGPT records are repaired as FastChat
repairs them (vicuna.data.flatten); `sharegpt_html` also turns the dumps' HTML into markdown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.data.flatten import FORMATS, flatten
from vicuna.files import check_output, text_file, write_json, write_lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--format", choices=sorted(FORMATS), required=True)
    p.add_argument("--on_error", choices=["stop", "skip"], default="stop",
                   help="stop at the first bad record, or skip and count it")
    p.add_argument("--report", type=Path,
                   help="write kept / skipped / repaired counts (and each skipped record) as JSON here")
    p.add_argument("--force", action="store_true",
                   help="replace outputs that are not text files (a directory, a binary)")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    a = p.parse_args()
    try:
        for out in filter(None, [a.output, a.report]):  # both refused before either is written
            check_output(out, force=a.force, own=text_file)
        flat = flatten(a.input, a.format, a.on_error)
        write_lines(a.output, flat.lines, force=a.force)
        if a.report:
            write_json(a.report, flat.report(a.input), force=a.force)
    except (OSError, ValueError) as e:  # RecordError is a ValueError
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}: {len(flat.lines)} examples, {sum(flat.skipped.values())} skipped")
    for reason, n in flat.skipped.most_common():
        print(f"  skipped {n}: {reason}")
    for repair, n in flat.repaired.most_common():
        print(f"  repaired {n}: {repair}")


if __name__ == "__main__":
    main()
