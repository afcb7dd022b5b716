#!/usr/bin/env python
"""Merge the LoRA weights of a finetuning step checkpoint into the base model (the tutorial's
tools/lora_weights.py --action merge)."""

from __future__ import annotations

import argparse
import sys

import torch

from vicuna import checkpoint, lora
from vicuna.files import atomic_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--action", choices=["merge"], default="merge",
                   help="merge: fold LoRA into the base weights (concat is not supported)")
    p.add_argument("--base_model", required=True, help="the converted base checkpoint")
    p.add_argument("--lora_weights", required=True, help="a LoRA step checkpoint")
    p.add_argument("--output", required=True, help="the merged checkpoint (.concat.pt)")
    a = p.parse_args()
    try:
        base, adapter = checkpoint.load(a.base_model), checkpoint.load(a.lora_weights)
        merged = lora.merge(base, adapter)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    with atomic_path(a.output) as tmp:
        torch.save(merged, tmp)
    print(f"wrote {a.output}: merged {lora.lora_layer_count(adapter)} LoRA layers")


if __name__ == "__main__":
    main()
