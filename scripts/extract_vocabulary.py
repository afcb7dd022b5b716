#!/usr/bin/env python
"""Write the vocabulary of an OpenNMT-py checkpoint, one token a line (the tutorial's
tools/extract_vocabulary.py flags)."""

from __future__ import annotations

import argparse
import sys

from vicuna.files import write_lines
from vicuna.weights import checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-model", required=True, help="OpenNMT-py checkpoint")
    p.add_argument("-out_file", required=True, help="vocabulary file to write")
    p.add_argument("-side", choices=["src", "tgt"], default="src")
    p.add_argument("-force", "--force", action="store_true",
                   help="replace an output that is not a text file (a directory, a binary)")
    a = p.parse_args()
    try:
        # any OpenNMT-py checkpoint holds the vocabulary; mmap: the weights are not needed
        vocab = checkpoint.load(a.model, mmap=True)["vocab"].get(a.side)
        if not vocab:
            raise ValueError(f"{a.model}: no {a.side} vocabulary in the checkpoint")
        write_lines(a.out_file, vocab, force=a.force)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.out_file}: {len(vocab)} tokens")


if __name__ == "__main__":
    main()
