#!/usr/bin/env python
"""Write translate_opts_<mode>.yaml, the inference options of one mode, from config.yaml's
`inference` section: the same decoding options for OpenNMT-py (`py`) and CTranslate2 (`ct2`)."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from vicuna.files import check_output, require_file, text_file, write_text


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
    p.add_argument("--force", action="store_true",
                   help="replace an output that is not a text file (a directory, a binary)")
    a = p.parse_args()
    try:
        check_output(a.output, force=a.force, own=text_file)
        require_file(a.tokenizer_model, "sentencepiece model")
        try:
            opts = translate_options(a.mode, a.model, a.tokenizer_model, json.loads(a.inference_json))
        except json.JSONDecodeError as e:
            raise ValueError(f"--inference_json: not JSON ({e})") from None
        except KeyError as e:
            raise ValueError(f"--inference_json: key {e} is missing (config.yaml's inference "
                             f"section)") from None
        header = f"# Written by the workflow from config.yaml (rule translate_opts, mode {a.mode}).\n"
        write_text(a.output, header + yaml.safe_dump(opts, sort_keys=False), force=a.force)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
