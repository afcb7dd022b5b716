#!/usr/bin/env python
"""Plot the training curves of a finetuning run from its TensorBoard event files: loss
(cross-entropy), perplexity, learning rate and tokens per second, training and validation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.files import atomic_path, check_output, png_file

PANELS = {  # OpenNMT-py's TensorBoard tags
    "cross-entropy": ["progress/xent", "valid/xent"],
    "perplexity": ["progress/ppl", "valid/ppl"],
    "learning rate": ["progress/lr"],
    "target tokens / s": ["progress/tgtper"],
}


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in scalars.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--log_dir", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True, help="PNG file")
    p.add_argument("--force", action="store_true",
                   help="replace an output that is not a PNG file (a directory, another file)")
    a = p.parse_args()
    try:
        check_output(a.output, force=a.force, own=png_file)
        if not a.log_dir.is_dir():
            raise FileNotFoundError(f"{a.log_dir}: no such directory (TensorBoard logs)")
        scalars = read_scalars(a.log_dir)
        if not scalars:
            raise ValueError(f"{a.log_dir}: no TensorBoard scalars (did the finetuning log any?)")
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
