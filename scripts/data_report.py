#!/usr/bin/env python
"""Write the data report: dataAI/stats.tsv (kept, skipped and why, token-length percentiles,
share over the training length) and a histogram of token lengths per corpus."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from vicuna import data_report, tokenizer
from vicuna.files import atomic_path, check_output, png_file, require_file, text_file, write_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", nargs=2, action="append", metavar=("NAME", "TEXT"), required=True)
    p.add_argument("--reports", type=Path, nargs="*", default=[],
                   help="flatten reports (<corpus>.flatten.json), where a corpus has one")
    p.add_argument("--tokenizer_model", required=True)
    p.add_argument("--seq_length", type=int, required=True)
    p.add_argument("--stats", type=Path, required=True)
    p.add_argument("--histogram", type=Path, required=True)
    p.add_argument("--force", action="store_true",
                   help="replace outputs of another kind (a directory, another file)")
    a = p.parse_args()
    try:
        write_report(a)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")


def write_report(a: argparse.Namespace) -> None:
    check_output(a.stats, force=a.force, own=text_file)
    check_output(a.histogram, force=a.force, own=png_file)
    for path in [*(text for _, text in a.corpus), *a.reports]:
        require_file(path, "corpus or flatten report")
    sp = tokenizer.load(a.tokenizer_model)
    reports = {r.name.removesuffix(".flatten.json"): r for r in a.reports}
    lengths, rows = {}, []
    for name, text in a.corpus:
        lengths[name] = data_report.token_lengths(sp, Path(text))
        rows.append(data_report.corpus_stats(name, lengths[name], a.seq_length, reports.get(name)))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(a.stats, out.getvalue(), force=a.force)
    with atomic_path(a.histogram, force=a.force, own=png_file) as tmp:
        data_report.histogram(lengths, a.seq_length, tmp)
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
