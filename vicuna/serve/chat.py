"""The chatbot's and the API's side of inference: the multi-round prompt that fits the context
budget, and the flags both servers share. Answers come from the mode's engine
(vicuna.serve.engines: `stream`), cut at the prompt layout's stop (vicuna.serve.stops).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vicuna import prompt
from vicuna.serve import engines
from vicuna.weights.shape import LLAMA_CONTEXT


def build_prompt(history: list[tuple[str, str]], message: str,
                 count_tokens: Callable[[str], int], max_context_length: int,
                 max_new_tokens: int, task: str = prompt.TASK) -> tuple[str, int]:
    """The prompt for `message` after `history`, and how many oldest rounds it leaves out.

    Keeps the newest whole rounds such that prompt tokens + max_new_tokens <= max_context_length.
    The whole prompt is counted each time: sentencepiece tokens do not add up across joins.
    """
    budget = max_context_length - max_new_tokens
    for dropped in range(len(history) + 1):
        text = prompt.conversation(history[dropped:], message, task)
        needed = count_tokens(text)
        if needed <= budget:
            return text, dropped
    raise ValueError(
        f"the message is too long: its prompt alone is {needed} tokens, but the context "
        f"length {max_context_length} leaves {budget} once {max_new_tokens} new tokens "
        "are reserved; shorten it or lower max new tokens"
    )


def add_server_args(parser, max_context_help: str) -> None:
    """The flags both servers share (the chatbot and the API): the tutorial's model flags and
    where to listen (127.0.0.1 unless told otherwise)."""
    parser.add_argument("-inference_config_file", required=True, type=Path)
    parser.add_argument("-inference_mode", required=True, choices=sorted(engines.REGISTRY))
    parser.add_argument("-max_context_length", type=int, default=LLAMA_CONTEXT,
                        help=f"{max_context_help}, at most (LLaMA: {LLAMA_CONTEXT})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on; 0.0.0.0 opens it to the network")
