"""One engine per inference mode, registered once by name: every caller that needs a model
(batch inference, the chatbot, the API, the held-out losses, the benchmarks) asks `load` for
the mode's engine and uses the same interface (vicuna.serve.engines.base.Engine): generate a batch,
stream one answer, score token sequences.

- `py`: OpenNMT-py on the merged checkpoint (vicuna/serve/engines/py.py);
- `ct2`: CTranslate2 on the released model (vicuna/serve/engines/ct2.py);
- `gguf`: llama.cpp on a GGUF release, on the CPU (vicuna/serve/engines/gguf.py).

A mode also says which config keys its options file (translate_opts_<mode>.yaml) takes, so
`options_file` writes each file from its own keys and a key one mode reads reruns that mode only.
Nothing heavy is imported here: the workflow's rules read REGISTRY at parse time.
"""

from __future__ import annotations

from pathlib import Path

from vicuna.serve import decoding, options
from vicuna.serve.engines.base import Answer, Engine, Watcher
from vicuna.serve.engines.ct2 import Ct2Engine
from vicuna.serve.engines.gguf import GgufEngine
from vicuna.serve.engines.py import PyEngine

__all__ = ["Answer", "Engine", "Watcher", "REGISTRY", "load", "options_file", "config_keys",
           "scoring_options"]

REGISTRY: dict[str, type[Engine]] = {"py": PyEngine, "ct2": Ct2Engine, "gguf": GgufEngine}


def engine_class(mode: str) -> type[Engine]:
    if mode not in REGISTRY:
        raise ValueError(f"inference mode {mode!r}: expected one of {sorted(REGISTRY)}")
    return REGISTRY[mode]


def load(mode: str, opts: str | Path | dict, source: str | None = None) -> Engine:
    """The engine of `mode`, configured by an options file (translate_opts_<mode>.yaml) or by
    the same options as a dict (`source` then names them in messages)."""
    cls = engine_class(mode)
    if isinstance(opts, dict):
        return cls(options.check(opts, source or "options"), source or "options")
    return cls(options.load(opts), opts)


def config_keys(mode: str) -> tuple[str, ...]:
    """The config.yaml `inference` keys the options file of `mode` is written from."""
    return (*decoding.KEYS, *engine_class(mode).config_keys)


def options_file(mode: str, model: str, tokenizer_model: str, inference: dict) -> dict:
    """translate_opts_<mode>.yaml's options from the mode's keys of `inference` (KeyError names
    a missing one; other keys are not read)."""
    cls = engine_class(mode)
    return {"model": model, "src_subword_model": tokenizer_model,
            **{key: inference[key] for key in decoding.KEYS},
            **cls.file_options({key: inference[key] for key in cls.config_keys}, tokenizer_model)}


def scoring_options(mode: str, model: str | Path, tokenizer_model: str | Path, device: str = "cpu",
                    precision: str = "fp32", batch_size: int = 16,
                    context: int | None = None) -> dict:
    """The options of an engine that scores sequences and writes at most one greedy token
    (MMLU, the held-out losses), in any mode: the one place these are built. `context`:
    max_context_length (LLaMA's 2048 when None)."""
    inference_keys = {"batch_size": batch_size, "beam_size": 1, "max_length": 1,
                      "random_sampling_topk": 1, "random_sampling_topp": 0.0,
                      "random_sampling_temp": 1.0, "seed": 1234, "device": device,
                      "precision": precision, "compute_type": "default", "cpu_threads": 0}
    opts = options_file(mode, str(model), str(tokenizer_model), inference_keys)
    return opts if context is None else {**opts, "max_context_length": context}
