"""Batch generation in two modes from one options file (translate_opts_<mode>.yaml):

- `py`: OpenNMT-py's own inference engine on the merged checkpoint (with vicuna.onmt_fixes);
- `ct2`: CTranslate2 on the released model, tokenized with the same sentencepiece model.

Prompts and predictions are corpus lines: "\\n" written as ｟newline｠.

A prompt and its answer must fit the model's context (`max_context_length` in the options file,
2048 tokens, LLaMA's, when absent): a longer prompt keeps its last tokens (where a Vicuna prompt
asks its question and ends in "ASSISTANT:"), and its Answer says so in `truncated`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
import yaml

from vicuna import checkpoint, decoding, onmt_fixes, prompt
from vicuna.files import require_file

DEFAULT_CONTEXT = 2048  # LLaMA's context length, in tokens
REQUIRED = ("model", "src_subword_model", "max_length")


@dataclass
class Answer:
    text: str  # a corpus line (newlines as ｟newline｠)
    score: float
    tokens: int
    truncated: dict | None = None  # set when the prompt was cut to fit the context


Generate = Callable[[list[str]], list[Answer]]


def load_options(path: str | Path) -> dict:
    """The options file as a dict, its required keys and the context budget checked."""
    try:
        opts = yaml.safe_load(require_file(path, "inference options").read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a YAML file ({' '.join(str(e).split())[:160]})") from None
    if not isinstance(opts, dict):
        raise ValueError(f"{path}: not a mapping of options (found {type(opts).__name__}): "
                         f"write one `key: value` a line")
    for key in REQUIRED:
        if key not in opts:
            raise ValueError(f"{path}: option {key!r} is missing")
    for key in ("max_length", "max_context_length"):
        if key in opts and (not isinstance(opts[key], int) or opts[key] < 1):
            raise ValueError(f"{path}: option {key!r} is {opts[key]!r}, expected a positive integer")
    if prompt_budget(opts) < 2:
        raise ValueError(f"{path}: max_length {opts['max_length']} leaves no room for a prompt "
                         f"in max_context_length {context_length(opts)}")
    return opts


def context_length(opts: dict) -> int:
    return opts.get("max_context_length", DEFAULT_CONTEXT)


def prompt_budget(opts: dict) -> int:
    """Most tokens a prompt (with <s>) may have, so that max_length more fit the context."""
    return context_length(opts) - opts["max_length"]


def check_model(mode: str, opts: dict, options_file: str | Path) -> None:
    """A named error for a model of the wrong kind, before an engine's own traceback."""
    model = Path(opts["model"])
    try:
        if mode == "py":
            checkpoint.load(model, kind="full", mmap=True)
        elif not (model / "model.bin").is_file():
            raise ValueError(f"{model}: not a CTranslate2 model directory (no model.bin): "
                             f"release the checkpoint with release_model.py")
        require_file(opts["src_subword_model"], "sentencepiece model")
    except (OSError, ValueError) as e:
        raise ValueError(f"{options_file}: {e}") from None


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


def py_engine(options_file: str | Path) -> Generate:
    """OpenNMT-py's InferenceEnginePY, configured from the options file as the tutorial does."""
    onmt_fixes.apply()
    from onmt.inference_engine import InferenceEnginePY
    from onmt.opts import translate_opts
    from onmt.utils.misc import set_random_seed, use_gpu
    from onmt.utils.parse import ArgumentParser

    parser = ArgumentParser(description="simple_inference")
    translate_opts(parser)
    # this project's own option (vicuna.inference.fit_prompt), read from the same file
    parser.add("--max_context_length", "-max_context_length", type=int, default=DEFAULT_CONTEXT)
    # -src is required by the parser but unused: prompts are passed as a list
    opt = parser.parse_args(["-config", str(options_file), "-src", "-"])
    ArgumentParser.validate_translate_opts(opt)
    ArgumentParser._get_all_transform_translate(opt)
    ArgumentParser._validate_transforms_opts(opt)
    ArgumentParser.validate_translate_opts_dynamic(opt)
    set_random_seed(opt.seed, use_gpu(opt))
    engine = InferenceEnginePY(opt)
    # OpenNMT-py gives back detokenized text: count its tokens as ct2 does, with the tokenizer.
    sp = spm.SentencePieceProcessor(model_file=opt.src_subword_model)

    def generate(prompts: list[str], settings: dict | None = None) -> list[Answer]:
        # `settings`: decoding.SAMPLING keys for this call only (the chatbot's sliders);
        # the translator reads them from its attributes at each batch.
        translator = engine.translator
        saved = {attr: getattr(translator, attr) for attr in decoding.TRANSLATOR_ATTRS.values()}
        try:
            for key, value in (settings or {}).items():
                setattr(translator, decoding.TRANSLATOR_ATTRS[key], value)
            scores, preds = engine.infer_list(prompts)
        finally:
            for attr, value in saved.items():
                setattr(translator, attr, value)
        return [
            Answer(text=p[0], score=float(s[0]), tokens=len(sp.encode(prompt.from_line(p[0]))))
            for p, s in zip(preds, scores, strict=True)
        ]

    return generate


def ct2_engine(options_file: str | Path) -> Generate:
    """CTranslate2's Generator; the prompt is <s> + sentencepiece pieces, as in OpenNMT-py."""
    opts = load_options(options_file)
    generator, sp = load_ct2(opts)

    def generate(prompts: list[str]) -> list[Answer]:
        tokens = [prompt_tokens(sp, prompt.from_line(p)) for p in prompts]
        results = generator.generate_batch(tokens, **decoding.ct2_args(opts))
        answers = []
        for r in results:
            pieces = r.sequences[0]
            answers.append(Answer(prompt.to_line(sp.decode_pieces(pieces)), float(r.scores[0]),
                                  len(pieces)))
        return answers

    return generate


def load_ct2(opts: dict):
    """The options' CTranslate2 Generator and sentencepiece model (batch engine and chatbot)."""
    import ctranslate2
    import sentencepiece as spm

    device = opts.get("device", "auto")
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    # compute_type "default" keeps the release's quantization where the device supports it
    # (int8_float16 runs as int8_float32 on a CPU, which has no float16 kernels).
    generator = ctranslate2.Generator(
        opts["model"], device=device, compute_type=opts.get("compute_type", "default"),
        inter_threads=1, intra_threads=cpu_threads(opts.get("threads", 0)),
    )
    sp = spm.SentencePieceProcessor(model_file=opts["src_subword_model"])
    if opts.get("seed") is not None:
        ctranslate2.set_random_seed(opts["seed"])
    return generator, sp


def cpu_threads(wanted: int) -> int:
    """CTranslate2's threads: as configured, never more than this process may use (a SLURM
    job's CPUs, a laptop's cores); 0 means all of those. CTranslate2's own 0 means 4 threads
    whatever the machine has, oversubscribed (and slower) on 2 cores."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(wanted, available or 1) if wanted > 0 else (available or 1)


def prompt_tokens(sp, text: str) -> list[str]:
    """What the model reads for a prompt text, in both modes: <s> + sentencepiece pieces."""
    return ["<s>", *sp.encode(text, out_type=str)]


ENGINES: dict[str, Callable[[str | Path], Generate]] = {"py": py_engine, "ct2": ct2_engine}


def run(mode: str, options_file: str | Path, prompts: list[str]) -> tuple[list[Answer], float]:
    """Answers to the prompts, each cut to fit the context first (see fit_prompt), and the
    seconds generating took."""
    opts = load_options(options_file)
    check_model(mode, opts, options_file)
    sp = spm.SentencePieceProcessor(model_file=str(opts["src_subword_model"]))
    fitted = [fit_prompt(sp, line, prompt_budget(opts)) for line in prompts]
    generate = ENGINES[mode](options_file)
    start = time.perf_counter()
    answers = generate([line for line, _ in fitted])
    seconds = time.perf_counter() - start
    for answer, (_, truncated) in zip(answers, fitted, strict=True):
        answer.truncated = truncated
    return answers, seconds
