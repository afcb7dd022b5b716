#!/usr/bin/env python
"""Release an OpenNMT-py checkpoint to CTranslate2 (the tutorial's onmt_release_model flags)."""

from __future__ import annotations

import argparse
import sys

from vicuna import onmt_fixes
from vicuna.files import atomic_path

QUANTIZATIONS = ["int8", "int8_float16", "int8_bfloat16", "int8_float32", "int16", "float16",
                 "bfloat16", "float32"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="OpenNMT-py checkpoint")
    p.add_argument("--output", required=True, help="CTranslate2 model directory")
    p.add_argument("--format", choices=["ctranslate2"], default="ctranslate2")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="int8_float16")
    a = p.parse_args()

    from ctranslate2.converters import OpenNMTPyConverter

    # CTranslate2 loads with weights_only=True explicitly; allow-listing the checkpoint's
    # argparse.Namespace keeps that safe load working, without unsafe deserialization.
    onmt_fixes.allow_checkpoint_pickles()
    try:
        with atomic_path(a.output) as tmp:
            OpenNMTPyConverter(a.model).convert(str(tmp), quantization=a.quantization)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {a.model}: {e}")
    print(f"wrote {a.output} ({a.quantization})")


if __name__ == "__main__":
    main()
