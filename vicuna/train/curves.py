"""Training curves of a finetuning run: the plot of loss (cross-entropy), perplexity, learning
rate and tokens per second, training and validation, from the scalars of its TensorBoard event
files (read by vicuna.train.events)."""

from __future__ import annotations

from pathlib import Path

from vicuna.files import atomic_path, png_file

PANELS = {  # OpenNMT-py's TensorBoard tags
    "cross-entropy": ["progress/xent", "valid/xent"],
    "perplexity": ["progress/ppl", "valid/ppl"],
    "learning rate": ["progress/lr"],
    "target tokens / s": ["progress/tgtper"],
}


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
