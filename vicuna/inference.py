"""Batch generation in two modes from one options file (translate_opts_<mode>.yaml):

- `py`: OpenNMT-py's own inference engine on the merged checkpoint (with vicuna.onmt_fixes);
- `ct2`: CTranslate2 on the released model, tokenized with the same sentencepiece model.

Prompts and predictions are corpus lines: "\\n" written as ｟newline｠.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
import yaml

from vicuna import onmt_fixes, prompt


@dataclass
class Answer:
    text: str  # a corpus line (newlines as ｟newline｠)
    score: float
    tokens: int


Generate = Callable[[list[str]], list[Answer]]


def load_options(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        opts = yaml.safe_load(f)
    for key in ("model", "src_subword_model", "max_length"):
        if key not in opts:
            raise ValueError(f"{path}: option {key!r} is missing")
    return opts


def py_engine(options_file: str | Path) -> Generate:
    """OpenNMT-py's InferenceEnginePY, configured from the options file as the tutorial does."""
    onmt_fixes.apply()
    from onmt.inference_engine import InferenceEnginePY
    from onmt.opts import translate_opts
    from onmt.utils.misc import set_random_seed, use_gpu
    from onmt.utils.parse import ArgumentParser

    parser = ArgumentParser(description="simple_inference")
    translate_opts(parser)
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

    def generate(prompts: list[str], decoding: dict | None = None) -> list[Answer]:
        # `decoding`: options-file decoding keys for this call only (the chatbot's sliders);
        # the translator reads them from its attributes at each batch.
        translator = engine.translator
        saved = {attr: getattr(translator, attr) for attr in _TRANSLATOR_ATTRS.values()}
        try:
            for key, value in (decoding or {}).items():
                setattr(translator, _TRANSLATOR_ATTRS[key], value)
            scores, preds = engine.infer_list(prompts)
        finally:
            for attr, value in saved.items():
                setattr(translator, attr, value)
        return [
            Answer(text=p[0], score=float(s[0]), tokens=len(sp.encode(prompt.from_line(p[0]))))
            for p, s in zip(preds, scores, strict=True)
        ]

    return generate


# options-file key -> the attribute of OpenNMT-py's Translator that holds it
_TRANSLATOR_ATTRS = {
    "max_length": "max_length",
    "random_sampling_temp": "random_sampling_temp",
    "random_sampling_topk": "sample_from_topk",
    "random_sampling_topp": "sample_from_topp",
}


def ct2_engine(options_file: str | Path) -> Generate:
    """CTranslate2's Generator; the prompt is <s> + sentencepiece pieces, as in OpenNMT-py."""
    opts = load_options(options_file)
    generator, sp = load_ct2(opts)

    def generate(prompts: list[str]) -> list[Answer]:
        tokens = [prompt_tokens(sp, prompt.from_line(p)) for p in prompts]
        results = generator.generate_batch(tokens, **ct2_decoding(opts))
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
        inter_threads=1, intra_threads=opts.get("threads", 0),
    )
    sp = spm.SentencePieceProcessor(model_file=opts["src_subword_model"])
    if opts.get("seed") is not None:
        ctranslate2.set_random_seed(opts["seed"])
    return generator, sp


def prompt_tokens(sp, text: str) -> list[str]:
    """What the model reads for a prompt text, in both modes: <s> + sentencepiece pieces."""
    return ["<s>", *sp.encode(text, out_type=str)]


def ct2_decoding(opts: dict) -> dict:
    """OpenNMT-py decoding options -> CTranslate2's generate_batch arguments."""
    topk = opts.get("random_sampling_topk", 1)
    return {
        "max_batch_size": opts.get("batch_size", 16),
        "beam_size": opts.get("beam_size", 1),
        "max_length": opts["max_length"],
        "min_length": opts.get("min_length", 0),
        "sampling_topk": 1 if topk == 0 else topk,  # 0 means "all" in OpenNMT-py: see note
        "sampling_topp": opts.get("random_sampling_topp", 1.0) or 1.0,
        "sampling_temperature": opts.get("random_sampling_temp", 1.0),
        "include_prompt_in_result": False,
        "return_scores": True,
    }


ENGINES: dict[str, Callable[[str | Path], Generate]] = {"py": py_engine, "ct2": ct2_engine}


def run(mode: str, options_file: str | Path, prompts: list[str]) -> tuple[list[Answer], float]:
    generate = ENGINES[mode](options_file)
    start = time.perf_counter()
    answers = generate(prompts)
    return answers, time.perf_counter() - start
