#!/usr/bin/env python
"""Write the vocabulary of an OpenNMT-py checkpoint, one token a line (the tutorial's
tools/extract_vocabulary.py flags)."""

from __future__ import annotations

import argparse
import sys

from vicuna import checkpoint
from vicuna.files import write_lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-model", required=True, help="OpenNMT-py checkpoint")
    p.add_argument("-out_file", required=True, help="vocabulary file to write")
    p.add_argument("-side", choices=["src", "tgt"], default="src")
    a = p.parse_args()
    try:
        vocab = checkpoint.load(a.model)["vocab"][a.side]
    except (FileNotFoundError, KeyError) as e:
        sys.exit(f"error: {a.model}: {e}")
    write_lines(a.out_file, vocab)
    print(f"wrote {a.out_file}: {len(vocab)} tokens")


if __name__ == "__main__":
    main()
