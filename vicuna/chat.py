"""The chatbot's side of inference: the multi-round prompt that fits the context budget, and
answers in both modes (`ct2` streamed token by token, `py` in one piece).

Decoding settings are dicts with the options file's keys (vicuna.decoding.SAMPLING), so both
engines read them as in batch inference; answers end at the prompt layout's stop
(vicuna.prompt.until_stop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vicuna import decoding, inference, prompt

Answerer = Callable[[str, dict], Iterator[str]]  # (prompt text, decoding) -> answer so far


def build_prompt(history: list[tuple[str, str]], message: str,
                 count_tokens: Callable[[str], int], max_context_length: int,
                 max_new_tokens: int) -> tuple[str, int]:
    """The prompt for `message` after `history`, and how many oldest rounds it leaves out.

    Keeps the newest whole rounds such that prompt tokens + max_new_tokens <= max_context_length.
    The whole prompt is counted each time: sentencepiece tokens do not add up across joins.
    """
    budget = max_context_length - max_new_tokens
    for dropped in range(len(history) + 1):
        text = prompt.conversation(history[dropped:], message)
        needed = count_tokens(text)
        if needed <= budget:
            return text, dropped
    raise ValueError(
        f"the message is too long: its prompt alone is {needed} tokens, but the context "
        f"length {max_context_length} leaves {budget} once {max_new_tokens} new tokens "
        "are reserved; shorten it or lower max new tokens"
    )


def token_counter(sp) -> Callable[[str], int]:
    """Prompt text -> how many tokens the model reads (<s> included), as the engines tokenize."""
    return lambda text: len(inference.prompt_tokens(sp, text))


def ct2_stream(generator, sp, text: str, settings: dict) -> Iterator[str]:
    """Yield the answer decoded so far after each new token (CTranslate2's generate_tokens)."""
    args = decoding.ct2_args(settings)
    steps = generator.generate_tokens(
        inference.prompt_tokens(sp, text), max_length=args["max_length"],
        sampling_topk=args["sampling_topk"], sampling_topp=args["sampling_topp"],
        sampling_temperature=args["sampling_temperature"],
    )
    ids: list[int] = []
    shown = None
    try:
        for step in steps:
            if step.token_id == sp.eos_id():
                break
            ids.append(step.token_id)
            # Decode all ids each time: a character can span several byte-fallback pieces.
            answer, stopped = prompt.until_stop(sp.decode(ids))
            if answer != shown:  # held-back pieces change nothing on the page
                shown = answer
                yield answer
            if stopped:
                break
    finally:
        steps.close()  # stops CTranslate2's decoding too (Stop button, STOP, end token)


def py_answer(generate: Callable[..., list[inference.Answer]], text: str,
              settings: dict) -> Iterator[str]:
    """OpenNMT-py's whole answer at once (its engine does not stream), as a one-item stream."""
    [answer] = generate([prompt.to_line(text)], settings)
    yield prompt.until_stop(prompt.from_line(answer.text))[0]


@dataclass
class Model:
    count_tokens: Callable[[str], int]
    answer: Answerer
    decoding: dict  # the options file's decoding.SAMPLING settings: the chatbot's defaults


def load(mode: str, options_file: str | Path) -> Model:
    """The model of one mode, configured by its translate_opts_<mode>.yaml."""
    opts = inference.load_options(options_file)
    defaults = decoding.defaults(opts)
    if mode == "ct2":
        generator, sp = inference.load_ct2(opts)
        return Model(token_counter(sp), lambda text, dec: ct2_stream(generator, sp, text, dec),
                     defaults)
    if mode == "py":
        from vicuna import tokenizer

        generate = inference.py_engine(options_file)
        sp = tokenizer.load(opts["src_subword_model"])
        return Model(token_counter(sp), lambda text, dec: py_answer(generate, text, dec),
                     defaults)
    raise ValueError(f"inference mode {mode!r}: expected one of {sorted(inference.ENGINES)}")


def add_server_args(parser, max_context_help: str) -> None:
    """The flags both servers share (the chatbot and the API): the tutorial's model flags and
    where to listen (127.0.0.1 unless told otherwise)."""
    parser.add_argument("-inference_config_file", required=True, type=Path)
    parser.add_argument("-inference_mode", required=True, choices=sorted(inference.ENGINES))
    parser.add_argument("-max_context_length", type=int, default=2048,
                        help=f"{max_context_help}, at most (LLaMA: 2048)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on; 0.0.0.0 opens it to the network")
