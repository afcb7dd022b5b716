#!/usr/bin/env python
"""Lay alpaca records (a JSON array or JSON lines: `instruction`, optional `input` and `output`)
out as the tutorial's inference prompts: one a line, in the alpaca template up to
"### Response:", newlines as ｟newline｠. Their outputs, where every record has one, become the
references (one a line), which the evaluation scores exact match against."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.data.flatten import alpaca_prompts
from vicuna.files import check_output, text_file, write_lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=Path, required=True, help="alpaca records (.json / .jsonl)")
    p.add_argument("--prompts", type=Path, required=True, help="the prompts, one a line")
    p.add_argument("--references", type=Path,
                   help="the records' outputs, one a line (an error where a record has none)")
    a = p.parse_args()
    try:
        for out in filter(None, [a.prompts, a.references]):  # both refused before either is written
            check_output(out, own=text_file)
        prompts, references = alpaca_prompts(a.records)
        if a.references and references is None:
            raise ValueError(f"{a.records}: no record has an 'output': no references to write "
                             f"to {a.references}")
        write_lines(a.prompts, prompts)
        if a.references:
            write_lines(a.references, references)
    except (OSError, ValueError) as e:  # RecordError is a ValueError
        sys.exit(f"error: {e}")
    print(f"wrote {a.prompts}: {len(prompts)} prompts"
          + (f"; {a.references}: their references" if a.references else ""))


if __name__ == "__main__":
    main()
