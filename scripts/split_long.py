#!/usr/bin/env python
"""Cut the examples of a flattened corpus that are longer than the training length into
windows of whole rounds that fit, each one the task line and then its rounds, as FastChat's
split_long_conversation.py does for Vicuna (vicuna.data.split_long). Examples that fit are copied
byte for byte; a round that alone does not fit is left out and counted.

    python scripts/split_long.py --tokenizer_model llama/tokenizer.model --seq_length 512 \\
        dataAI/sharegpt.txt dataAI/sharegpt.split.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from vicuna import tokenizer
from vicuna.data import split_long
from vicuna.files import atomic_path, check_output, iter_lines, require_file, text_file, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer_model", required=True, help="the model's sentencepiece model")
    p.add_argument("--seq_length", type=int, required=True,
                   help="the training's seq_length: the longest example OpenNMT-py keeps, in tokens")
    p.add_argument("--answer_loss_only", action="store_true",
                   help="leave room for answer_loss_only's mark before each answer")
    p.add_argument("--report", type=Path, help="write what was kept, split and dropped as JSON here")
    p.add_argument("--force", action="store_true",
                   help="replace outputs that are not text files (a directory, a binary)")
    p.add_argument("input", type=Path, help="a flattened corpus: one example a line")
    p.add_argument("output", type=Path)
    a = p.parse_args()
    try:
        stats = split(a)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}: {stats.kept} examples kept as they were, {stats.split} split into "
          f"{stats.windows} windows, {stats.dropped} dropped, {stats.dropped_rounds} rounds dropped")
    for reason, n in stats.dropped_by_reason.most_common():
        print(f"  dropped {n}: {reason}")


def split(a: argparse.Namespace) -> split_long.SplitStats:
    for out in filter(None, [a.output, a.report]):  # both refused before either is written
        check_output(out, force=a.force, own=text_file)
    if a.seq_length < 8:
        raise ValueError(f"--seq_length {a.seq_length}: too short for any example")
    require_file(a.input, "flattened corpus")
    lengths = split_long.Lengths(tokenizer.load(a.tokenizer_model), a.answer_loss_only)
    stats = split_long.SplitStats()
    with atomic_path(a.output, force=a.force, own=text_file) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            lines = tqdm(iter_lines(a.input), desc=a.input.name, unit=" examples", disable=None)
            for line, _ in split_long.split_lines(lines, lengths, a.seq_length, stats):
                f.write(line + "\n")
        if not stats.kept + stats.windows:  # an empty training file would only fail later
            reasons = "; ".join(f"{n} x {r}" for r, n in stats.dropped_by_reason.most_common(3))
            raise ValueError(f"{a.input}: no example fits seq_length {a.seq_length}"
                             + (f" ({reasons})" if reasons else " (an empty corpus)"))
    if a.report:
        write_json(a.report, {"input": str(a.input), "seq_length": a.seq_length,
                              "answer_loss_only": a.answer_loss_only, **stats.as_dict()},
                   force=a.force)
    return stats


if __name__ == "__main__":
    main()
