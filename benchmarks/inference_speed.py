#!/usr/bin/env python
"""Inference speed of both modes on a generated LLaMA (models.py; 53M parameters by default):
OpenNMT-py (`py`) against CTranslate2 (`ct2`, float32 and int8 releases), at batch 1 and 16,
in one run so the ratios compare like with like on a noisy machine. Each engine runs in its
own process (engine_project.py: vicuna.serve.engines on the options the workflow writes, greedy),
every answer forced to --new_tokens tokens (min_length = max_length).

    .venv/bin/python benchmarks/inference_speed.py [--dim 512 --layers 6 --prompts 16 --new_tokens 64]

benchmarks/peers.py measures the same engines against transformers and llama.cpp.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common

MODES = {"py": ("py", "onmt"), "ct2 float32": ("ct2", "ct2_float32"), "ct2 int8": ("ct2", "ct2_int8")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    env = common.thread_env(a.threads)
    with tempfile.TemporaryDirectory(prefix="inference_speed.") as d:
        work = Path(d)
        manifest = common.run_child("peers_prepare", {
            "work": str(work), "dim": a.dim, "layers": a.layers, "prompts": a.prompts,
            "llamacpp": False, "finetune": None}, work, env, "prepare")
        if manifest is None:
            raise SystemExit("error: the model could not be built")
        print(f"model: {manifest['params'] / 1e6:.1f}M parameters (dim {a.dim}, {a.layers} layers), "
              f"{a.prompts} prompts x {a.new_tokens} new tokens, {a.threads} threads")
        rates = {}
        for label, (mode, model) in MODES.items():
            r = common.run_child("engine_project", {
                "mode": mode, "model": manifest[model], "tokenizer": manifest["tokenizer"],
                "prompts": manifest["prompts"], "new_tokens": a.new_tokens, "batches": a.batches,
                "threads": a.threads}, work, env, label.replace(" ", "_"))
            if r is None:
                raise SystemExit(f"error: {label} failed")
            for batch in a.batches:
                rates[(label, batch)] = r["rates"][str(batch)]
                print(f"batch {batch:>2}  {label:<12} {rates[(label, batch)]:8.1f} tokens/s "
                      f"({r['seconds'][str(batch)]:.2f} s)", flush=True)
        for batch in a.batches:
            py = rates[("py", batch)]
            f32, int8 = rates[("ct2 float32", batch)], rates[("ct2 int8", batch)]
            print(f"batch {batch:>2}: ct2 float32 / py = {f32 / py:.1f}x, ct2 int8 / py = "
                  f"{int8 / py:.1f}x, int8 / float32 = {int8 / f32:.2f}x")


if __name__ == "__main__":
    main()
