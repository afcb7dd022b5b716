#!/usr/bin/env python
"""Plot the training curves of a finetuning run from its TensorBoard event files: loss
(cross-entropy), perplexity, learning rate and tokens per second, training and validation.

--log_dir reads every event file under a directory; --history reads those that the training
listed when it finished (train.py -tensorboard_history: a killed run's, then its resumed run's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vicuna.files import atomic_path, check_output, png_file, require_file

PANELS = {  # OpenNMT-py's TensorBoard tags
    "cross-entropy": ["progress/xent", "valid/xent"],
    "perplexity": ["progress/ppl", "valid/ppl"],
    "learning rate": ["progress/lr"],
    "target tokens / s": ["progress/tgtper"],
}


def history_files(history: Path) -> list[Path]:
    """The event files a training's history lists (relative to the history's folder)."""
    try:
        runs = json.loads(history.read_text(encoding="utf-8"))["runs"]
        files = [history.parent / run["events"] for run in runs]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{history}: not a TensorBoard history (train.py -tensorboard_history):"
                         f" {type(e).__name__}: {e}") from None
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (an event file that {history} lists)")
    return files


def read_scalars(files: list[Path]) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in files:
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in scalars.items()}


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
            files = history_files(require_file(a.history, "TensorBoard history"))
        elif a.log_dir.is_dir():
            files = sorted(a.log_dir.rglob("events.out.tfevents.*"))
        else:
            raise FileNotFoundError(f"{a.log_dir}: no such directory (TensorBoard logs)")
        scalars = read_scalars(files)
        if not scalars:
            raise ValueError(f"{a.history or a.log_dir}: no TensorBoard scalars (did the "
                             f"finetuning log any?)")
        plot(scalars, a.output, force=a.force)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}: {', '.join(sorted(scalars))}")


def plot(scalars: dict[str, list[tuple[int, float]]], output: Path, *, force: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6))
    for ax, (title, tags) in zip(axes.flat, PANELS.items(), strict=True):
        for tag in tags:
            if tag in scalars:
                steps, values = zip(*scalars[tag], strict=True)
                ax.plot(steps, values, marker="o" if tag.startswith("valid") else None,
                        label=tag.split("/")[0])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    with atomic_path(output, force=force, own=png_file) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


if __name__ == "__main__":
    main()
