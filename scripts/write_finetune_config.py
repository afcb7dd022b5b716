#!/usr/bin/env python
"""Write the OpenNMT-py finetuning config (the tutorial's replicate_vicuna.yaml) from
config.yaml's `train` section, the base model's shape and the data paths. A corpus with no
example in it is refused here, by name: OpenNMT-py would stop at its first batch with a bare
StopIteration."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from vicuna import run_layout
from vicuna.files import add_text_output, check_output, no_example, require_file, text_file, write_text
from vicuna.train.finetune_config import finetune_config
from vicuna.weights.convert import read_shape


def corpus(spec: str) -> tuple[str, dict]:
    """NAME=PATH:WEIGHT"""
    name, _, rest = spec.partition("=")
    path, _, weight = rest.rpartition(":")
    if not name or not path or not weight.isdigit():
        raise argparse.ArgumentTypeError(f"--corpus {spec!r}: expected NAME=PATH:WEIGHT")
    return name, {"path": path, "weight": int(weight)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model_dir", required=True, help="the base model (Meta or Hugging Face layout)")
    p.add_argument("--vocab", required=True, help="vocab.txt of the converted checkpoint")
    p.add_argument("--base_checkpoint", required=True)
    p.add_argument("--tokenizer_model", required=True)
    p.add_argument("--corpus", type=corpus, action="append", required=True)
    p.add_argument("--valid", help="validation corpus")
    p.add_argument("--save_model", required=True)
    p.add_argument("--tensorboard_dir", required=True)
    p.add_argument("--train_json", required=True, help="config.yaml's train section, as JSON")
    add_text_output(p)
    a = p.parse_args()

    try:
        check_output(a.output, force=a.force, own=text_file)
        corpora = [(c["path"], f"corpus {n}") for n, c in a.corpus]
        corpora += [(a.valid, "validation corpus")] if a.valid else []
        for path, what in [(a.vocab, "vocabulary"), (a.base_checkpoint, "base checkpoint"),
                           (a.tokenizer_model, "sentencepiece model"), *corpora]:
            require_file(path, what)
        for path, what in corpora:  # OpenNMT-py would stop at its first batch, naming none
            if why := no_example(path):
                raise ValueError(f"{what} ({path}) holds no example ({why})")
        with open(a.vocab, encoding="utf-8") as f:
            vocab_size = sum(1 for _ in f)
        try:
            train = json.loads(a.train_json)
        except json.JSONDecodeError as e:
            raise ValueError(f"--train_json: not JSON ({e})") from None
        try:
            cfg = finetune_config(
                shape=read_shape(a.model_dir), vocab_size=vocab_size, corpora=dict(a.corpus),
                valid=a.valid, tokenizer_model=a.tokenizer_model, vocab=a.vocab,
                base_checkpoint=a.base_checkpoint, save_model=a.save_model,
                tensorboard_dir=a.tensorboard_dir, train=train,
            )
        except KeyError as e:
            raise ValueError(f"--train_json: key {e} is missing (config.yaml's train section)") from None
        header = run_layout.written_by("finetune_config", "its train section")
        write_text(a.output, header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True),
                   force=a.force)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
