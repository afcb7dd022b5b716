"""Training curves of a finetuning run, from its TensorBoard event files: which files (every one
under a directory, or those a training's history lists), their scalars, and the plot of loss
(cross-entropy), perplexity, learning rate and tokens per second, training and validation."""

from __future__ import annotations

import json
from pathlib import Path

from vicuna.files import atomic_path, png_file

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


def event_files(log_dir: Path) -> list[Path]:
    """Every event file under a TensorBoard log directory."""
    if not log_dir.is_dir():
        raise FileNotFoundError(f"{log_dir}: no such directory (TensorBoard logs)")
    return sorted(log_dir.rglob("events.out.tfevents.*"))


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
