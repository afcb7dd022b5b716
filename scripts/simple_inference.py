#!/usr/bin/env python
"""Batch inference on a file of prompts (one a line, newlines as ｟newline｠) in `py`
(OpenNMT-py) or `ct2` (CTranslate2) mode: writes predictions_<mode>.txt, one answer a line,
and predictions_<mode>.json with each answer's score and the timing (the tutorial's flags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna import inference
from vicuna.files import write_json, write_lines
from vicuna.flatten import iter_lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-input_file", required=True, type=Path)
    p.add_argument("-inference_config_file", required=True, type=Path)
    p.add_argument("-inference_mode", required=True, choices=sorted(inference.ENGINES))
    p.add_argument("-output_dir", required=True, type=Path)
    a = p.parse_args()

    prompts = list(iter_lines(a.input_file))
    if not prompts:
        sys.exit(f"error: {a.input_file}: no prompt in it")
    try:
        answers, seconds = inference.run(a.inference_mode, a.inference_config_file, prompts)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if len(answers) != len(prompts):
        sys.exit(f"error: {len(prompts)} prompts but {len(answers)} answers")
    tokens = sum(ans.tokens for ans in answers)
    write_lines(a.output_dir / f"predictions_{a.inference_mode}.txt", [ans.text for ans in answers])
    write_json(a.output_dir / f"predictions_{a.inference_mode}.json", {
        "mode": a.inference_mode,
        "seconds": round(seconds, 3),
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "answers": [{"score": ans.score, "tokens": ans.tokens} for ans in answers],
    })
    print(f"{a.inference_mode}: {len(answers)} answers, {tokens} tokens in {seconds:.1f}s")


if __name__ == "__main__":
    main()
