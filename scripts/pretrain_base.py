#!/usr/bin/env python
"""Train a LLaMA-style sentencepiece model and pretrain a tiny LLaMA on synthetic text,
saved in Meta's format: params.json + consolidated.00.pth (+ tokenizer.model)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from vicuna import prompt, tokenizer
from vicuna.files import atomic_path, iter_lines
from vicuna.tiny import pretrain
from vicuna.weights import llama


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pretrain_text", type=Path, required=True)
    p.add_argument("--tokenizer_texts", type=Path, nargs="+", required=True)
    p.add_argument("--vocab_size", type=int, required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--n_layers", type=int, required=True)
    p.add_argument("--n_heads", type=int, required=True)
    p.add_argument("--multiple_of", type=int, required=True)
    p.add_argument("--norm_eps", type=float, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch_size", type=int, required=True)
    p.add_argument("--learning_rate", type=float, required=True)
    p.add_argument("--seq_len", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokenizer_model", type=Path, required=True, help="output tokenizer.model")
    p.add_argument("--model_dir", type=Path, required=True, help="output Meta-format directory")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    try:
        texts = pretrain.tokenizer_texts([*a.tokenizer_texts, a.pretrain_text])
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    sp = tokenizer.train(texts, a.vocab_size, a.tokenizer_model)

    args = llama.ModelArgs(
        dim=a.dim, n_layers=a.n_layers, n_heads=a.n_heads, vocab_size=sp.get_piece_size(),
        multiple_of=a.multiple_of, norm_eps=a.norm_eps,
    )
    lines = [prompt.from_line(line) for line in iter_lines(a.pretrain_text)]
    model, losses = pretrain.pretrain(
        args, sp, lines, steps=a.steps, batch_size=a.batch_size,
        learning_rate=a.learning_rate, seq_len=a.seq_len, seed=a.seed,
    )
    with atomic_path(a.model_dir, force=True) as tmp:  # a rerun: Snakemake left tokenizer.model
        llama.save_meta(model, tmp)
        shutil.copy(a.tokenizer_model, tmp / "tokenizer.model")
    print(f"pretrained {sum(t.numel() for t in model.parameters()):,} parameters; "
          f"loss {losses[0]:.3f} -> {sum(losses[-20:]) / min(20, len(losses)):.3f}")


if __name__ == "__main__":
    main()
