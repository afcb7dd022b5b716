"""Held-out loss of an OpenNMT-py model, counted as OpenNMT-py's validation does (the model
reads <s> + tokens and predicts tokens + </s>; the loss is averaged over tokens), and exact
match of answers."""

from __future__ import annotations

import math
from pathlib import Path

import sentencepiece as spm
import torch

from vicuna import chat, checkpoint, prompt

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def load_model(path: str | Path, device: str = "cpu", precision: str = "fp32") -> torch.nn.Module:
    """A checkpoint's model on `device` in `precision`; the checkpoint's own tensors are let go
    before the model moves, so that the job holds one copy of one model at a time."""
    model = checkpoint.build_model(checkpoint.load(path))
    return model.to(device=device, dtype=DTYPES[precision])


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, sp: spm.SentencePieceProcessor, lines: list[str]) -> float:
    if not lines:
        raise ValueError("no example to score")
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for line in lines:
        ids = [sp.bos_id(), *sp.encode(prompt.from_line(line)), sp.eos_id()]
        tokens = torch.tensor([ids], device=device)
        logits = checkpoint.logits(model, tokens[:, :-1])[0]
        total += torch.nn.functional.cross_entropy(logits, tokens[0, 1:], reduction="sum").item()
        count += len(ids) - 1
    return total / count


def perplexity(loss: float) -> float:
    return math.exp(loss)


def exact_match(predictions: list[str], references: list[str], *, until_stop: bool) -> float:
    """The share of predictions (corpus lines) equal to their reference, blanks at the ends aside.

    With `until_stop`, a prediction is read as the chatbot shows it: up to where the model opens
    a next "### Instruction:" round by itself. Without, the model must also stop there (</s>).
    """
    def answer(line: str) -> str:
        text = prompt.from_line(line)
        return (chat.until_stop(text)[0] if until_stop else text).strip()

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    hits = sum(answer(p) == answer(r) for p, r in zip(predictions, references, strict=True))
    return hits / len(references)
