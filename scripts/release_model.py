#!/usr/bin/env python
"""Release an OpenNMT-py checkpoint to CTranslate2 (the tutorial's onmt_release_model flags)."""

from __future__ import annotations

import argparse
import sys

from vicuna import checkpoint, onmt_fixes
from vicuna.files import atomic_path, check_output, ct2_model_dir

QUANTIZATIONS = ["int8", "int8_float16", "int8_bfloat16", "int8_float32", "int16", "float16",
                 "bfloat16", "float32"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="OpenNMT-py checkpoint (merged, not LoRA)")
    p.add_argument("--output", required=True, help="CTranslate2 model directory")
    p.add_argument("--format", choices=["ctranslate2"], default="ctranslate2")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="int8_float16")
    p.add_argument("--force", action="store_true",
                   help="replace an existing CTranslate2 model directory (never other files)")
    a = p.parse_args()

    from ctranslate2.converters import OpenNMTPyConverter

    # CTranslate2 loads with weights_only=True explicitly; allow-listing the checkpoint's
    # argparse.Namespace keeps that safe load working, without unsafe deserialization.
    onmt_fixes.allow_checkpoint_pickles()
    try:
        check_output(a.output, force=a.force, own=ct2_model_dir)
        checkpoint.load(a.model, kind="full", mmap=True)  # a named error, not CT2's traceback
        with atomic_path(a.output, force=a.force, own=ct2_model_dir) as tmp:
            OpenNMTPyConverter(a.model).convert(str(tmp), quantization=a.quantization)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output} ({a.quantization})")


if __name__ == "__main__":
    main()
