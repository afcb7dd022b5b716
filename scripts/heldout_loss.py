#!/usr/bin/env python
"""Held-out loss and perplexity of the base and the finetuned model on each held-out corpus:
writes outputs/heldout_loss.json, {"base": {"<corpus>_loss": ..., "<corpus>_perplexity": ...},
"finetuned": {...}}. Models run on --device in --precision, one at a time. The decoding options
play no part: `evaluate` joins this file to the answers' scores. With --answer_loss_only (the
training's train.answer_loss_only), each corpus also gets "<corpus>_answer_loss" and
"<corpus>_answer_perplexity": the loss on the tokens that carry it in that training. --mode
scores in another inference mode (gguf: --base and --finetuned are GGUF files); the workflow's
rule scores the checkpoints in py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.evaluation import evaluate
from vicuna.files import check_output, require_file, text_file, write_json
from vicuna.serve import engines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base", type=Path, required=True, help="the converted base checkpoint")
    p.add_argument("--finetuned", type=Path, required=True, help="the merged checkpoint")
    p.add_argument("--tokenizer_model", required=True)
    p.add_argument("--mode", choices=sorted(engines.REGISTRY), default="py",
                   help="the engine that scores (py: the checkpoints; gguf: GGUF files)")
    p.add_argument("--heldout", nargs=2, action="append", required=True, metavar=("NAME", "TEXT"))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=evaluate.PRECISIONS, default="fp32")
    p.add_argument("--answer_loss_only", action="store_true",
                   help="also the loss on the answers only, as the training counts it then")
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args()
    try:
        check_output(a.json, own=text_file)
        heldout = {name: evaluate.read_lines(text, f"held-out {name}") for name, text in a.heldout}
        models = {"base": require_file(a.base, f"base model ({a.mode} mode)"),
                  "finetuned": require_file(a.finetuned, f"finetuned model ({a.mode} mode)")}
        result = evaluate.heldout_losses(models, heldout, a.tokenizer_model, a.device, a.precision,
                                         answers_only=a.answer_loss_only, mode=a.mode)
        write_json(a.json, result)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    for name, losses in result.items():
        print(name, " ".join(f"{k} {v}" for k, v in losses.items()))


if __name__ == "__main__":
    main()
