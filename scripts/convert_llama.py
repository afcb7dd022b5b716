#!/usr/bin/env python
"""Convert a LLaMA checkpoint in Meta's format (params.json + consolidated.*.pth) and its
tokenizer.model to an OpenNMT-py checkpoint (the tutorial's tools/convert_llama.py flags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vicuna.convert import convert_meta
from vicuna.files import atomic_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model_dir", type=Path, required=True, help="Meta checkpoint directory")
    p.add_argument("--tokenizer_model", type=Path, required=True, help="sentencepiece model")
    p.add_argument("--output", type=Path, required=True, help="OpenNMT-py checkpoint to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    a = p.parse_args()
    if a.output.exists() and not a.force:
        sys.exit(f"error: {a.output} exists (pass --force to overwrite)")
    try:
        checkpoint = convert_meta(a.model_dir, a.tokenizer_model)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    with atomic_path(a.output) as tmp:
        torch.save(checkpoint, tmp)
    n = sum(t.numel() for t in checkpoint["model"].values()) + checkpoint["generator"]["weight"].numel()
    print(f"wrote {a.output}: {n:,} parameters, vocabulary of {len(checkpoint['vocab']['src'])}")


if __name__ == "__main__":
    main()
