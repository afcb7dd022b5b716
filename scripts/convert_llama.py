#!/usr/bin/env python
"""Convert a LLaMA checkpoint and its tokenizer.model to an OpenNMT-py checkpoint (the tutorial's
tools/convert_llama.py flags). --model_dir holds either Meta's layout (params.json +
consolidated.NN.pth, 1 to 8 shards) or Hugging Face's (config.json + model*.safetensors or
pytorch_model*.bin, sharded with an *.index.json): the config file tells which.

An existing --output is replaced only with --force, and only if it is a file (or an empty
directory): a directory with files in it is refused even with --force, since a checkpoint is
one file and replacing a directory by it would delete data this tool never made."""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import torch

from vicuna.files import atomic_path, torch_zip
from vicuna.weights.convert import convert, nbytes


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model_dir", type=Path, required=True,
                   help="checkpoint directory, Meta's or Hugging Face's layout")
    p.add_argument("--tokenizer_model", type=Path, required=True, help="sentencepiece model")
    p.add_argument("--output", type=Path, required=True, help="OpenNMT-py checkpoint to write")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing output file (never a directory with files in it)")
    a = p.parse_args(argv)
    start = time.monotonic()
    try:
        if a.output.is_dir() and any(a.output.iterdir()):
            raise FileExistsError(f"{a.output}: is a directory with files in it, not replaced "
                                  f"even with --force: choose a file name for --output")
        if a.output.exists() and not a.force:
            raise FileExistsError(f"{a.output} exists (pass --force to overwrite)")
        checkpoint = convert(a.model_dir, a.tokenizer_model)
        with atomic_path(a.output, force=a.force, own=torch_zip) as tmp:
            torch.save(checkpoint, tmp)
    except (OSError, ValueError, pickle.UnpicklingError) as e:
        sys.exit("error: " + " ".join(str(e).split()))
    n = sum(t.numel() for t in checkpoint["model"].values()) + checkpoint["generator"]["weight"].numel()
    print(f"wrote {a.output}: {n:,} parameters ({nbytes(checkpoint) / 2**30:.2f} GiB), vocabulary "
          f"of {len(checkpoint['vocab']['src'])}, in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
