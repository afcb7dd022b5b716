"""Per-corpus statistics: records skipped and repaired when flattening (and why), token-length
percentiles with the configured tokenizer, and what reaches the model: for a training corpus,
the examples and tokens kept, split (data.split_long) and dropped, and why; without
split_long, OpenNMT-py's filtertoolong drops every example over seq_length. Validation and
held-out corpora are scored whole. Lengths are counted as vicuna.data.split_long counts them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vicuna import prompt
from vicuna.data import split_long
from vicuna.files import iter_lines

PERCENTILES = (50, 90, 99)
TRAIN, SCORED = "train", "scored whole"
COUNTS = ("kept", "kept_tokens", "split", "split_tokens", "windows", "window_tokens", "dropped",
          "dropped_tokens", "dropped_rounds", "dropped_round_tokens", "training_examples",
          "training_tokens")


def token_lengths(lengths: split_long.Lengths, corpus: Path, chunk: int = 512) -> np.ndarray:
    """The length of each example of a corpus, as filtertoolong counts it."""
    out: list[int] = []
    batch: list[str] = []
    for line in iter_lines(corpus):
        batch.append(prompt.from_line(line))
        if len(batch) == chunk:
            out += lengths.of_texts(batch)
            batch.clear()
    return np.array(out + lengths.of_texts(batch), dtype=np.int64)


def filtered(lengths: np.ndarray, seq_length: int) -> dict:
    """What filtertoolong leaves of a training corpus that is not split."""
    stats = split_long.SplitStats(examples=len(lengths), tokens=int(lengths.sum()))
    over = lengths > seq_length
    stats.kept, stats.kept_tokens = int((~over).sum()), int(lengths[~over].sum())
    stats.dropped, stats.dropped_tokens = int(over.sum()), int(lengths[over].sum())
    if stats.dropped:
        stats.dropped_by_reason[split_long.FILTERED] = stats.dropped
    return stats.as_dict()


def scored(lengths: np.ndarray) -> dict:
    """Validation and held-out corpora: read whole (no filtertoolong there)."""
    fate = split_long.SplitStats(examples=len(lengths), tokens=int(lengths.sum()),
                                 kept=len(lengths), kept_tokens=int(lengths.sum())).as_dict()
    return fate | {"training_examples": "-", "training_tokens": "-"}


def _reasons(counts: dict) -> str:
    return "; ".join(f"{n} {r}" for r, n in counts.items()) or "-"


def corpus_stats(name: str, use: str, lengths: np.ndarray, seq_length: int, fate: dict,
                 flatten_report: Path | None) -> dict:
    """One row of stats.tsv. `fate` is what reached the model (split_long.SplitStats.as_dict:
    a split report, `filtered` or `scored`)."""
    flat = json.loads(flatten_report.read_text()) if flatten_report else {}
    row = {"corpus": name, "use": use,
           "records": flat["kept"] + flat["skipped"] if flat else "-",
           "skipped": flat.get("skipped", 0),
           "skipped_by_reason": _reasons(flat.get("skipped_by_reason", {})),
           "repaired": _reasons(flat.get("repaired", {})),
           "examples": int(len(lengths)), "tokens": int(lengths.sum())}
    for p in PERCENTILES:
        row[f"p{p}_tokens"] = int(np.percentile(lengths, p)) if len(lengths) else 0
    row["max_tokens"] = int(lengths.max()) if len(lengths) else 0
    row[f"over_{seq_length}"] = int((lengths > seq_length).sum())
    row[f"share_over_{seq_length}"] = round(float((lengths > seq_length).mean()), 4) if len(lengths) else 0.0
    row.update({key: fate[key] for key in COUNTS})
    row["dropped_by_reason"] = _reasons(fate["dropped_by_reason"])
    return row


def _caption(row: dict) -> str:
    if row["use"] != TRAIN:
        return f"{row['corpus']}: {row['examples']} examples, scored whole"
    text = f"{row['corpus']}: {row['kept']} kept"
    if row["split"]:
        text += f", {row['split']} split into {row['windows']} windows"
    text += f", {row['dropped']} dropped"
    if row["dropped_rounds"]:
        text += f" (and {row['dropped_rounds']} rounds)"
    return text + (f": {row['dropped_by_reason']}" if row["dropped_by_reason"] != "-" else "")


def histogram(lengths: dict[str, np.ndarray], windows: dict[str, np.ndarray], rows: list[dict],
              seq_length: int, output: Path) -> None:
    """One panel per corpus: its examples as flattened and, where split, the windows the model
    reads instead; each captioned with what was kept, split and dropped, and why."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.2 + 1.6 * len(rows)), sharex=True,
                             squeeze=False)
    every = [*lengths.values(), *windows.values()]
    top = max([seq_length, *[int(v.max()) for v in every if len(v)]])
    bins = np.linspace(0, top, 60)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        name = row["corpus"]
        ax.hist(lengths[name], bins=bins, alpha=0.6, label="as flattened")
        if name in windows:
            ax.hist(windows[name], bins=bins, alpha=0.6, label="split: what the model reads")
        ax.axvline(seq_length, color="black", linestyle="--", label=f"seq_length {seq_length}")
        ax.set_title(_caption(row), fontsize=8, loc="left")
        ax.set_ylabel("examples", fontsize=8)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("tokens per example (<s> + pieces + </s>)")
    fig.tight_layout()
    fig.savefig(output, dpi=100, format="png")
    plt.close(fig)
