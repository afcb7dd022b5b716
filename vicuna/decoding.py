"""Decoding options, named once, and what each means for both engines; the options file of
each mode (translate_opts_<mode>.yaml) written from config.yaml.

The names are OpenNMT-py's translate options; config.yaml's `inference` section, the options
files (translate_opts_<mode>.yaml), the chatbot's sliders and the API's requests all use them:

- max_length: the most tokens generated per answer;
- random_sampling_topk: sample from the k most likely tokens; 1 is greedy; 0 sets no limit
  (every token of the vocabulary), in both modes;
- random_sampling_topp: sample from the most likely tokens whose probabilities add up to p;
  0 turns it off;
- random_sampling_temp: the sampling temperature; 0 is greedy, in both modes.

OpenNMT-py reads these meanings as they are; CTranslate2's generate arguments are mapped here
(`ct2_args`), so that the same options file decodes the same way in `py` and `ct2`.
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


# --- The options file of each mode, from config.yaml's `inference` section --------------------
# The config keys each mode reads, and no others: rules/inference.smk gives each mode's job
# only these, so that a ct2-only key (compute_type) does not rerun `py`, nor precision `ct2`.
MODE_KEYS = {
    "py": (*KEYS, "device", "precision"),
    "ct2": (*KEYS, "device", "compute_type", "cpu_threads"),
}


def options_file(mode: str, model: str, tokenizer_model: str, inference: dict) -> dict:
    """translate_opts_<mode>.yaml's options from the mode's keys of `inference` (KeyError names
    a missing one; other keys are not read)."""
    opts = {"model": model, "src_subword_model": tokenizer_model,
            **{key: inference[key] for key in KEYS}}
    device = inference["device"]
    if mode == "py":
        # OpenNMT-py's translate options; the sentencepiece transform turns ｟newline｠ into
        # "\n" on the way in and back on the way out.
        opts.update({
            "transforms": ["sentencepiece"],
            "tgt_subword_model": tokenizer_model,
            "batch_type": "sents",
            "gpu": -1 if device == "cpu" else 0,
            "world_size": 1,
            "gpu_ranks": [] if device == "cpu" else [0],
            "precision": inference["precision"],
            # OpenNMT-py's translator also writes every prediction to `output` (pred.txt in
            # the working directory by default); simple_inference.py writes its own files.
            "output": "/dev/null",
        })
    elif mode == "ct2":
        # A fixed thread count: CTranslate2's CPU kernels split work by threads, and ties in
        # greedy decoding can fall differently with another split (a SLURM job vs a laptop).
        opts.update({"device": device, "compute_type": inference["compute_type"],
                     "threads": inference["cpu_threads"]})
    else:
        raise ValueError(f"inference mode {mode!r}: expected one of {sorted(MODE_KEYS)}")
    return opts
