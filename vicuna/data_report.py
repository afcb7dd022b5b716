"""Per-corpus statistics: examples kept and skipped (and why), token-length percentiles with
the configured tokenizer, and the share longer than the training length (which
OpenNMT-py's filtertoolong drops)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sentencepiece as spm

from vicuna import prompt
from vicuna.files import iter_lines

PERCENTILES = (50, 90, 99)


def token_lengths(sp: spm.SentencePieceProcessor, corpus: Path) -> np.ndarray:
    """Tokens per example as the model reads it: <s> + pieces."""
    return np.array([1 + len(sp.encode(prompt.from_line(line))) for line in iter_lines(corpus)])


def corpus_stats(name: str, lengths: np.ndarray, seq_length: int, report: Path | None) -> dict:
    skipped, reasons = 0, {}
    if report is not None and report.is_file():
        flat = json.loads(report.read_text())
        skipped, reasons = flat["skipped"], flat["skipped_by_reason"]
    row = {"corpus": name, "kept": int(len(lengths)), "skipped": skipped,
           "skipped_by_reason": "; ".join(f"{n} {r}" for r, n in reasons.items()) or "-"}
    for p in PERCENTILES:
        row[f"p{p}_tokens"] = int(np.percentile(lengths, p)) if len(lengths) else 0
    row["max_tokens"] = int(lengths.max()) if len(lengths) else 0
    row[f"share_over_{seq_length}"] = round(float((lengths > seq_length).mean()), 4) if len(lengths) else 0.0
    return row


def histogram(all_lengths: dict[str, np.ndarray], seq_length: int, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    top = max([seq_length, *[int(v.max()) for v in all_lengths.values() if len(v)]])
    bins = np.linspace(0, top, 50)
    for name, lengths in all_lengths.items():
        ax.hist(lengths, bins=bins, alpha=0.6, label=name)
    ax.axvline(seq_length, color="black", linestyle="--", label=f"seq_length {seq_length}")
    ax.set_xlabel("tokens per example")
    ax.set_ylabel("examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=100, format="png")
    plt.close(fig)
