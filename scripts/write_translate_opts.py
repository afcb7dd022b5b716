#!/usr/bin/env python
"""Write translate_opts_<mode>.yaml, the inference options of one mode, from config.yaml's
`inference` section: the same decoding options for OpenNMT-py (`py`) and CTranslate2 (`ct2`)."""

from __future__ import annotations

import argparse
import json

import yaml

from vicuna.files import write_text


def translate_options(mode: str, model: str, tokenizer_model: str, decoding: dict) -> dict:
    opts = {
        "model": model,
        "src_subword_model": tokenizer_model,
        "batch_size": decoding["batch_size"],
        "beam_size": decoding["beam_size"],
        "max_length": decoding["max_length"],
        "random_sampling_topk": decoding["random_sampling_topk"],
        "random_sampling_topp": decoding["random_sampling_topp"],
        "random_sampling_temp": decoding["random_sampling_temp"],
        "seed": decoding["seed"],
    }
    if mode == "py":
        # OpenNMT-py's translate options; the sentencepiece transform turns ｟newline｠ into
        # "\n" on the way in and back on the way out.
        opts.update({
            "transforms": ["sentencepiece"],
            "tgt_subword_model": tokenizer_model,
            "batch_type": "sents",
            "gpu": -1 if decoding["device"] == "cpu" else 0,
            "world_size": 1,
            "gpu_ranks": [] if decoding["device"] == "cpu" else [0],
            "precision": decoding["precision"],
            # OpenNMT-py's translator also writes every prediction to `output` (pred.txt in
            # the working directory by default); simple_inference.py writes its own files.
            "output": "/dev/null",
        })
    else:
        # A fixed thread count: CTranslate2's CPU kernels split work by threads, and ties in
        # greedy decoding can fall differently with another split (a SLURM job vs a laptop).
        opts.update({"device": decoding["device"], "compute_type": decoding["compute_type"],
                     "threads": decoding["cpu_threads"]})
    return opts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=["py", "ct2"], required=True)
    p.add_argument("--model", required=True, help="merged checkpoint (py) or CTranslate2 dir (ct2)")
    p.add_argument("--tokenizer_model", required=True)
    p.add_argument("--inference_json", required=True, help="config.yaml's inference section")
    p.add_argument("--output", required=True)
    a = p.parse_args()
    opts = translate_options(a.mode, a.model, a.tokenizer_model, json.loads(a.inference_json))
    header = f"# Written by the workflow from config.yaml (rule translate_opts, mode {a.mode}).\n"
    write_text(a.output, header + yaml.safe_dump(opts, sort_keys=False))
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
