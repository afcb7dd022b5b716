#!/usr/bin/env python
"""Merge the LoRA weights of a finetuning step checkpoint into the base model (the tutorial's
tools/lora_weights.py --action merge)."""

from __future__ import annotations

import argparse
import sys

import torch

from vicuna.files import atomic_path, check_output, torch_zip
from vicuna.weights import checkpoint, lora


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--action", choices=["merge"], default="merge",
                   help="merge: fold LoRA into the base weights (concat is not supported)")
    p.add_argument("--base_model", required=True, help="the converted base checkpoint")
    p.add_argument("--lora_weights", required=True, help="a LoRA step checkpoint")
    p.add_argument("--output", required=True, help="the merged checkpoint (.concat.pt)")
    p.add_argument("--force", action="store_true",
                   help="replace an output that is not a checkpoint (a directory, another file)")
    a = p.parse_args()
    try:
        check_output(a.output, force=a.force, own=torch_zip)  # before minutes of loading
        base = checkpoint.load(a.base_model, kind="full")
        adapter = checkpoint.load(a.lora_weights, kind="lora")
        try:
            merged = lora.merge(base, adapter)
        except ValueError as e:
            raise ValueError(f"{a.lora_weights} does not fit the base {a.base_model}: {e}") from None
        with atomic_path(a.output, force=a.force, own=torch_zip) as tmp:
            torch.save(merged, tmp)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}: merged {lora.lora_layer_count(adapter)} LoRA layers")


if __name__ == "__main__":
    main()
