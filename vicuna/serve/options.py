"""translate_opts_<mode>.yaml, the options file every inference entry point reads (batch
inference, chatbot, API, evaluation): its required keys, and the context budget it sets.

A prompt and its answer must fit the model's context: `max_context_length` in the file (this
project's own option; 2048 tokens, LLaMA's, when absent) counts <s>, the prompt's tokens and
the `max_length` tokens reserved for the answer.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vicuna.files import require_file
from vicuna.weights.shape import LLAMA_CONTEXT

REQUIRED = ("model", "src_subword_model", "max_length")


def load(path: str | Path) -> dict:
    """The options file as a dict, its required keys and the context budget checked."""
    try:
        opts = yaml.safe_load(require_file(path, "inference options").read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a YAML file ({' '.join(str(e).split())[:160]})") from None
    if not isinstance(opts, dict):
        raise ValueError(f"{path}: not a mapping of options (found {type(opts).__name__}): "
                         f"write one `key: value` a line")
    return check(opts, path)


def check(opts: dict, source: str | Path) -> dict:
    """`opts` if its required keys are there and its lengths make sense; `source` names it."""
    for key in REQUIRED:
        if key not in opts:
            raise ValueError(f"{source}: option {key!r} is missing")
    for key in ("max_length", "max_context_length"):
        if key in opts and (not isinstance(opts[key], int) or opts[key] < 1):
            raise ValueError(f"{source}: option {key!r} is {opts[key]!r}, expected a positive "
                             f"integer")
    if prompt_budget(opts) < 2:
        raise ValueError(f"{source}: max_length {opts['max_length']} leaves no room for a "
                         f"prompt in max_context_length {context_length(opts)}")
    return opts


def context_length(opts: dict) -> int:
    return opts.get("max_context_length", LLAMA_CONTEXT)


def prompt_budget(opts: dict) -> int:
    """Most tokens a prompt (with <s>) may have, so that max_length more fit the context."""
    return context_length(opts) - opts["max_length"]
