"""Decoding options, named once, and what each means for every engine; the options file of
each mode (translate_opts_<mode>.yaml) is written by vicuna.serve.engines.options_file from each
mode's keys.

The names are OpenNMT-py's translate options; config.yaml's `inference` section, the options
files (translate_opts_<mode>.yaml), the chatbot's sliders and the API's requests all use them:

- max_length: the most tokens generated per answer;
- random_sampling_topk: sample from the k most likely tokens; 1 is greedy; 0 sets no limit
  (every token of the vocabulary), in every mode;
- random_sampling_topp: sample from the most likely tokens whose probabilities add up to p;
  0 turns it off;
- random_sampling_temp: the sampling temperature; 0 is greedy, in every mode.

OpenNMT-py reads these meanings as they are; CTranslate2's generate arguments are mapped here
(`ct2_args`), and so is the `gguf` engine's own choice of the next token (`gguf_args`), so that
the same options file decodes the same way in `py`, `ct2` and `gguf`.
"""

from __future__ import annotations

# What a caller may change per answer (the chatbot's sliders, an API request).
SAMPLING = ("max_length", "random_sampling_topk", "random_sampling_topp", "random_sampling_temp")
# config.yaml's `inference` keys that both modes read as they are (in the options files' order).
KEYS = ("batch_size", "beam_size", *SAMPLING, "seed")

# options-file key -> the attribute of OpenNMT-py's Translator that holds it (3.5.1), for
# per-call settings on a loaded engine.
TRANSLATOR_ATTRS = {
    "max_length": "max_length",
    "random_sampling_temp": "random_sampling_temp",
    "random_sampling_topk": "sample_from_topk",
    "random_sampling_topp": "sample_from_topp",
}

# A per-call setting besides SAMPLING: the seed of that call's sampling (engines that can honour
# it say so: vicuna.serve.engines.base.Engine.seed_unsupported).
SEED = "seed"

GREEDY = 1  # top-k 1: always the most likely token
# OpenNMT-py's defaults (3.5.1), for an options file that leaves a key out: ct2 reads the same.
ONMT_DEFAULTS = {"batch_size": 30, "beam_size": 5, "min_length": 0, "random_sampling_topk": 0,
                 "random_sampling_topp": 0.0, "random_sampling_temp": 1.0}


def defaults(opts: dict) -> dict:
    """The per-answer settings an options file holds: the chatbot's and the API's defaults."""
    return {key: opts[key] for key in SAMPLING if key in opts}


def chosen(defaults: dict, *, max_length: int | None = None, temperature: float | None = None,
           top_k: int | None = None, top_p: float | None = None) -> dict:
    """`defaults` with what a user chose (None keeps the default), as options-file keys."""
    choice = {"max_length": max_length, "random_sampling_temp": temperature,
              "random_sampling_topk": top_k, "random_sampling_topp": top_p}
    return {**defaults, **{key: value for key, value in choice.items() if value is not None}}


def requested(defaults: dict, *, max_length: int | None = None, temperature: float | None = None,
              top_k: int | None = None, top_p: float | None = None) -> dict:
    """An API request's decoding, with OpenAI's meaning of temperature: `defaults` (the options
    file's) with what the request sets.

    Temperature 0 is greedy. A temperature above 0 samples: with the request's top_k when it
    gives one (top_k 1 is then its own choice of greedy), else with the options file's top-k
    where that samples (0, or more than 1), else from every token (top-k 0): a greedy options
    file (top-k 1, the tiny default) must not silently turn a request's sampling into greedy.
    Without a temperature, the options file decodes as it says.
    """
    settings = chosen(defaults, max_length=max_length, temperature=temperature, top_k=top_k,
                      top_p=top_p)
    if temperature and top_k is None and settings.get("random_sampling_topk") == GREEDY:
        settings["random_sampling_topk"] = 0
    return settings


def samples(settings: dict) -> bool:
    """Whether these decoding settings sample (else they are greedy: the answer is the same
    every time, seed or none)."""
    o = {**ONMT_DEFAULTS, **settings}
    return o["random_sampling_temp"] != 0 and o["random_sampling_topk"] != GREEDY


def ct2_args(opts: dict) -> dict:
    """Options-file decoding -> CTranslate2's generate_batch arguments, with the meanings above.

    CTranslate2's sampling_topk 0 also samples from every token (checked on a release: answers
    vary with the seed), but its temperature 0 is no greedy switch and its top-p is off at 1.
    """
    o = {**ONMT_DEFAULTS, **opts}
    temperature = o["random_sampling_temp"]
    return {
        "max_batch_size": o["batch_size"],
        "beam_size": o["beam_size"],
        "max_length": o["max_length"],
        "min_length": o["min_length"],
        "sampling_topk": GREEDY if temperature == 0 else o["random_sampling_topk"],
        "sampling_topp": o["random_sampling_topp"] or 1.0,
        "sampling_temperature": temperature or 1.0,
        "include_prompt_in_result": False,
        "return_scores": True,
    }


def gguf_args(opts: dict) -> dict:
    """Options-file decoding -> the gguf engine's choice of each next token
    (vicuna/serve/engines/gguf.py `pick`), with the meanings above: greedy (the most likely
    token) for top-k 1 or temperature 0; else the logits divided by the temperature, the k most
    likely tokens kept (0: every token), then the most likely of those whose probabilities add
    up to top-p (0: off), and one drawn; the end token is never chosen before `min_length`
    tokens. llama.cpp has no beam search here: `beam_size` is returned for the engine to
    refuse anything but 1."""
    o = {**ONMT_DEFAULTS, **opts}
    temperature = o["random_sampling_temp"]
    return {
        "max_length": o["max_length"],
        "min_length": o["min_length"],
        "beam_size": o["beam_size"],
        "greedy": temperature == 0 or o["random_sampling_topk"] == GREEDY,
        "top_k": o["random_sampling_topk"],
        "top_p": o["random_sampling_topp"],
        "temperature": temperature,
    }
