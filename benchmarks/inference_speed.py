#!/usr/bin/env python
"""Inference speed of both modes on a generated LLaMA (>= 25M parameters): OpenNMT-py (`py`)
against CTranslate2 (`ct2`, float32 and int8), at batch 1 and 16, in one run so the ratios
compare like with like on a noisy machine. Answers are asked to be of the same length
(min_length = max_length); tokens are counted by re-encoding each answer with the tokenizer.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/inference_speed.py

(PASSIVE: torch's OpenMP threads would otherwise keep spinning after the py runs and slow
down the CTranslate2 runs that follow in the same process.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from vicuna import decoding

REPO = Path(__file__).resolve().parents[1]
LLAMA_TOKENIZER = REPO.parent / "shared" / "fixtures" / "llama-tokenizer" / "tokenizer.model"
FALLBACK_VOCAB = 768  # config.yaml's synthetic.vocab_size


def script(name: str, *args: str) -> None:
    subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], check=True,
                   capture_output=True)


def build(tmp: Path, dim: int, layers: int) -> tuple[Path, int]:
    from vicuna import llama, prompt, synthetic, tokenizer

    if LLAMA_TOKENIZER.is_file():
        tok = LLAMA_TOKENIZER
    else:  # a user's clone: a LLaMA-style tokenizer of our own, as the tiny default trains it
        # (the synthetic text has fewer than a thousand distinct pieces: ask for the tiny's 768)
        sets = synthetic.generate(1, 2000, 0, 1, 2000)
        tokenizer.train([prompt.alpaca(**r) for r in sets["alpaca"]], FALLBACK_VOCAB,
                        tmp / "tok.model")
        tok = tmp / "tok.model"
    vocab = tokenizer.load(tok).get_piece_size()
    torch.manual_seed(0)
    args = llama.ModelArgs(dim=dim, n_layers=layers, n_heads=dim // 64, vocab_size=vocab,
                           multiple_of=256)
    model = llama.Transformer(args)
    params = sum(p.numel() for p in model.parameters())
    llama.save_meta(model, tmp / "meta")
    script("convert_llama.py", "--model_dir", str(tmp / "meta"), "--tokenizer_model", str(tok),
           "--output", str(tmp / "model.pt"))
    for q in ("float32", "int8"):
        script("release_model.py", "--model", str(tmp / "model.pt"), "--output",
               str(tmp / f"ct2_{q}"), "--quantization", q)
    return tok, params


def options(tmp: Path, mode: str, model: Path, tok: Path, batch: int, new_tokens: int) -> Path:
    """The mode's options file as the workflow writes it (greedy), answers of new_tokens each."""
    inference = {"device": "cpu", "precision": "fp32", "compute_type": "default",
                 "cpu_threads": 0, "batch_size": batch, "beam_size": 1, "max_length": new_tokens,
                 "random_sampling_topk": 1, "random_sampling_topp": 0.0,
                 "random_sampling_temp": 1.0, "seed": 1}
    opts = decoding.options_file(mode, str(model), str(tok), inference)
    opts["min_length"] = new_tokens
    path = tmp / f"{mode}_{model.name}_{batch}.yaml"
    path.write_text(yaml.safe_dump(opts))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--prompts", type=int, default=16)
    a = p.parse_args()

    from vicuna import inference, prompt, synthetic, tokenizer

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tok, params = build(tmp, a.dim, a.layers)
        sp = tokenizer.load(tok)
        held = synthetic.generate(2, 1, 1, a.prompts, 1)["heldout"]
        prompts = [prompt.to_line(prompt.alpaca(r["instruction"], r["input"], "")) for r in held]
        print(f"model: {params / 1e6:.1f}M parameters (dim {a.dim}, {a.layers} layers), "
              f"{len(prompts)} prompts x {a.new_tokens} new tokens, {torch.get_num_threads()} threads")
        rates = {}
        for batch in (1, 16):
            for label, mode, model in (("py", "py", tmp / "model.pt"),
                                       ("ct2 float32", "ct2", tmp / "ct2_float32"),
                                       ("ct2 int8", "ct2", tmp / "ct2_int8")):
                generate = inference.ENGINES[mode](options(tmp, mode, model, tok, batch, a.new_tokens))
                generate(prompts[:2])  # warm up
                start = time.perf_counter()
                answers = generate(prompts)
                seconds = time.perf_counter() - start
                tokens = sum(len(sp.encode(prompt.from_line(x.text))) for x in answers)
                rates[(label, batch)] = tokens / seconds
                print(f"batch {batch:>2}  {label:<12} {rates[(label, batch)]:8.0f} tokens/s "
                      f"({tokens} tokens in {seconds:.2f} s)")
        for batch in (1, 16):
            py = rates[("py", batch)]
            print(f"batch {batch:>2}: ct2 float32 / py = {rates[('ct2 float32', batch)] / py:.1f}x, "
                  f"ct2 int8 / py = {rates[('ct2 int8', batch)] / py:.1f}x, "
                  f"int8 / float32 = {rates[('ct2 int8', batch)] / rates[('ct2 float32', batch)]:.2f}x")


if __name__ == "__main__":
    main()
