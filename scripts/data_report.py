#!/usr/bin/env python
"""Write the data report: dataAI/stats.tsv (records skipped and repaired, token-length
percentiles, and for each training corpus the examples and tokens kept, split and dropped, and
why) and a histogram of token lengths per corpus (and of the split windows)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from vicuna import tokenizer
from vicuna.data import data_report, split_long
from vicuna.files import atomic_path, check_output, png_file, require_file, text_file, write_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", nargs=2, action="append", metavar=("NAME", "TEXT"), required=True)
    p.add_argument("--reports", type=Path, nargs="*", default=[],
                   help="flatten reports (<corpus>.flatten.json), where a corpus has one")
    p.add_argument("--training", nargs="*", metavar="NAME",
                   help="the corpora the model is trained on (filtertoolong applies to them); "
                        "the others are scored whole. Default: every corpus")
    p.add_argument("--split", nargs=3, action="append", default=[],
                   metavar=("NAME", "TEXT", "REPORT"),
                   help="a training corpus split by split_long.py: its windows and its report")
    p.add_argument("--tokenizer_model", required=True)
    p.add_argument("--seq_length", type=int, required=True)
    p.add_argument("--answer_loss_only", action="store_true",
                   help="count room for answer_loss_only's mark before each answer")
    p.add_argument("--stats", type=Path, required=True)
    p.add_argument("--histogram", type=Path, required=True)
    p.add_argument("--force", action="store_true",
                   help="replace outputs of another kind (a directory, another file)")
    a = p.parse_args()
    try:
        write_report(a)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {e}")


def write_report(a: argparse.Namespace) -> None:
    check_output(a.stats, force=a.force, own=text_file)
    check_output(a.histogram, force=a.force, own=png_file)
    names = [name for name, _ in a.corpus]
    splits = {name: (Path(text), Path(report)) for name, text, report in a.split}
    training = set(names if a.training is None else a.training)
    for name in (training | set(splits)) - set(names):
        raise ValueError(f"--training / --split {name}: no --corpus of that name")
    for path in [*(text for _, text in a.corpus), *a.reports, *(p for s in splits.values() for p in s)]:
        require_file(path, "corpus or report")
    lengths = split_long.Lengths(tokenizer.load(a.tokenizer_model), a.answer_loss_only)
    reports = {r.name.removesuffix(".flatten.json"): r for r in a.reports}
    plotted, windows, rows = {}, {}, []
    for name, text in a.corpus:
        plotted[name] = data_report.token_lengths(lengths, Path(text))
        if name in splits:
            split_text, report = splits[name]
            windows[name] = data_report.token_lengths(lengths, split_text)
            fate = json.loads(report.read_text())
        elif name in training:
            fate = data_report.filtered(plotted[name], a.seq_length)
        else:
            fate = data_report.scored(plotted[name])
        use = data_report.TRAIN if name in training else data_report.SCORED
        rows.append(data_report.corpus_stats(name, use, plotted[name], a.seq_length, fate,
                                             reports.get(name)))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(a.stats, out.getvalue(), force=a.force)
    with atomic_path(a.histogram, force=a.force, own=png_file) as tmp:
        data_report.histogram(plotted, windows, rows, a.seq_length, tmp)
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
