#!/usr/bin/env python
"""Batch inference on a file of prompts (one a line, newlines as ｟newline｠) in `py`
(OpenNMT-py), `ct2` (CTranslate2) or `gguf` (llama.cpp) mode: writes predictions_<mode>.txt,
one answer a line as generated (the tutorial's file), answers_<mode>.txt, the same answers as
the chatbot shows them (up to where the model opens a next "### Instruction:" round by itself), and
predictions_<mode>.json with each answer's score and the timing (the tutorial's flags).
A prompt longer than the context (option max_context_length) keeps its last tokens: a warning
on stderr and `truncated` in its entry of the JSON say so."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna import prompt
from vicuna.files import check_output, iter_lines, require_file, text_file, write_json, write_lines
from vicuna.serve import engines, inference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-input_file", required=True, type=Path)
    p.add_argument("-inference_config_file", required=True, type=Path)
    p.add_argument("-inference_mode", required=True, choices=sorted(engines.REGISTRY))
    p.add_argument("-output_dir", required=True, type=Path)
    p.add_argument("-force", "--force", action="store_true",
                   help="replace outputs that are not text files (a directory, a binary)")
    a = p.parse_args()
    outputs = [a.output_dir / f"predictions_{a.inference_mode}.{ext}" for ext in ("txt", "json")]
    outputs.append(a.output_dir / f"answers_{a.inference_mode}.txt")
    try:
        for out in outputs:
            check_output(out, force=a.force, own=text_file)
        prompts = list(iter_lines(require_file(a.input_file, "prompts")))
        if not prompts:
            raise ValueError(f"{a.input_file}: no prompt in it")
        inference.check_prompts(prompts, a.input_file)
        answers, seconds = inference.run(a.inference_mode, a.inference_config_file, prompts)
        if len(answers) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        for number, ans in enumerate(answers, 1):
            if ans.truncated:
                print(f"warning: {a.input_file} line {number}: prompt of "
                      f"{ans.truncated['prompt_tokens']} tokens does not fit the context with "
                      f"max_length; kept its last {ans.truncated['kept_tokens']} tokens",
                      file=sys.stderr)
        tokens = sum(ans.tokens for ans in answers)
        write_lines(outputs[0], [ans.text for ans in answers], force=a.force)
        write_lines(outputs[2], [prompt.to_line(prompt.until_stop(prompt.from_line(ans.text))[0])
                                 for ans in answers], force=a.force)
        write_json(outputs[1], {
            "mode": a.inference_mode,
            "seconds": round(seconds, 3),
            "generated_tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
            "truncated_prompts": sum(1 for ans in answers if ans.truncated),
            "answers": [{"score": ans.score, "tokens": ans.tokens,
                         **({"truncated": ans.truncated} if ans.truncated else {})}
                        for ans in answers],
        }, force=a.force)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"{a.inference_mode}: {len(answers)} answers, {tokens} tokens in {seconds:.1f}s")


if __name__ == "__main__":
    main()
