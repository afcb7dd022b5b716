#!/usr/bin/env python
"""Plot the training curves of a finetuning run from its TensorBoard event files: loss
(cross-entropy), perplexity, learning rate and tokens per second, training and validation.

--log_dir reads every event file under a directory; --history reads those that the training
listed when it finished (train.py -tensorboard_history: a killed run's, then its resumed run's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.files import check_output, png_file, require_file
from vicuna.train import curves, events


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--log_dir", type=Path, help="TensorBoard logs: every event file in it")
    source.add_argument("--history", type=Path,
                        help="a training's TensorBoard history (JSON): the event files it lists")
    p.add_argument("--output", type=Path, required=True, help="PNG file")
    p.add_argument("--force", action="store_true",
                   help="replace an output that is not a PNG file (a directory, another file)")
    a = p.parse_args()
    try:
        check_output(a.output, force=a.force, own=png_file)
        if a.history:
            files = events.history_files(require_file(a.history, "TensorBoard history"))
        else:
            files = events.event_files(a.log_dir, required=True)
        scalars = events.read_scalars(files)
        if not scalars:
            raise ValueError(f"{a.history or a.log_dir}: no TensorBoard scalars (did the "
                             f"finetuning log any?)")
        curves.plot(scalars, a.output, force=a.force)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}: {', '.join(sorted(scalars))}")


if __name__ == "__main__":
    main()
