"""Batch inference: a file's prompts answered by one mode's engine (vicuna.serve.engines), each prompt
first cut to fit the context.

Prompts and predictions are corpus lines: "\\n" written as ｟newline｠. A prompt and its answer
must fit the model's context (vicuna.serve.options: `max_context_length`, LLaMA's 2048 when absent):
a longer prompt keeps its last tokens (where a prompt asks its question and ends in the open
"### Response:"), and its Answer says so in `truncated`.
"""

from __future__ import annotations

import time
from pathlib import Path

import sentencepiece as spm

from vicuna import prompt
from vicuna.serve import engines, options
from vicuna.serve.engines import Answer


class EmptyPrompt(ValueError):
    """A prompt with nothing in it: an error of the entry point that read it."""


def check_prompts(lines: list[str], where: str | Path) -> None:
    """A named error for the first empty prompt (a blank line, or one of blanks only): the
    model would answer nothing in particular, and in a batch it can change the others."""
    for number, line in enumerate(lines, 1):
        if not prompt.from_line(line).strip():
            raise EmptyPrompt(f"{where} line {number}: empty prompt")


def fit_prompt(sp: spm.SentencePieceProcessor, line: str, budget: int) -> tuple[str, dict | None]:
    """The prompt line cut to its last tokens so that <s> + its pieces <= budget, and what was
    done (None when it fits)."""
    pieces = sp.encode(prompt.from_line(line))
    if 1 + len(pieces) <= budget:
        return line, None
    keep = budget - 1
    text = sp.decode(pieces[-keep:])
    while len(sp.encode(text)) > budget - 1:  # decoding and encoding again may split otherwise
        keep -= 1
        text = sp.decode(pieces[-keep:])
    return prompt.to_line(text), {"prompt_tokens": 1 + len(pieces),
                                  "kept_tokens": 1 + len(sp.encode(text)), "budget": budget}


def run(mode: str, options_file: str | Path, prompts: list[str],
        engine: engines.Engine | None = None) -> tuple[list[Answer], float]:
    """Answers (texts as corpus lines) to the prompt lines, each cut to fit the context first
    (fit_prompt), and the seconds generating took; `engine`: one already loaded."""
    engine = engine or engines.load(mode, options_file)
    fitted = [fit_prompt(engine.sp, line, options.prompt_budget(engine.opts)) for line in prompts]
    start = time.perf_counter()
    answers = engine.generate([prompt.from_line(line) for line, _ in fitted])
    seconds = time.perf_counter() - start
    for answer, (_, truncated) in zip(answers, fitted, strict=True):
        answer.text, answer.truncated = prompt.to_line(answer.text), truncated
    return answers, seconds
