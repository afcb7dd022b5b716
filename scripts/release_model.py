#!/usr/bin/env python
"""Release an OpenNMT-py checkpoint (the tutorial's onmt_release_model flags): to CTranslate2, to
a Hugging Face LlamaForCausalLM directory (--format huggingface, for transformers and vLLM), or,
from a LoRA step checkpoint, to a PEFT adapter for the base in Hugging Face's layout
(--format peft --base_model DIR), or to one GGUF file for llama.cpp and Ollama (--format gguf
--gguf_type f16|q8_0|q4_k_m|f32)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vicuna import onmt_fixes
from vicuna.files import (
    atomic_path,
    check_output,
    ct2_model_dir,
    gguf_file,
    hf_model_dir,
    peft_adapter_dir,
)
from vicuna.weights import checkpoint
from vicuna.weights.shape import LLAMA_CONTEXT

QUANTIZATIONS = ["int8", "int8_float16", "int8_bfloat16", "int8_float32", "int16", "float16",
                 "bfloat16", "float32"]
DTYPES = ["float16", "bfloat16", "float32"]
GGUF_TYPES = ["f32", "f16", "q8_0", "q4_k_m"]  # vicuna.weights.gguf_export.TYPES
OWN = {"ctranslate2": ct2_model_dir, "huggingface": hf_model_dir, "peft": peft_adapter_dir,
       "gguf": gguf_file}


def ctranslate2(a: argparse.Namespace) -> str:
    from vicuna.weights import ct2_release

    ck = checkpoint.load(a.model, kind="full", mmap=True)  # a named error, not CT2's traceback
    with atomic_path(a.output, force=a.force, own=ct2_model_dir) as tmp:
        ct2_release.convert(a.model, str(tmp), a.quantization, ck["opt"])
    window = ct2_release.window(ck["opt"])
    return (f"{a.quantization}, rotary base {ct2_release.rotary_base(ck['opt']):g}"
            + (f", sliding window {window}" if window else ""))


def needed(a: argparse.Namespace, flag: str, why: str):
    """The value of --flag, which --format a.format needs (`why`: what it is)."""
    value = getattr(a, flag)
    if value is None:
        raise ValueError(f"--{flag}: needed by --format {a.format} ({why})")
    return value


def huggingface(a: argparse.Namespace) -> str:
    from vicuna.weights.hf_export import export_model

    tokenizer = needed(a, "tokenizer_model", "the model's sentencepiece tokenizer.model")
    ck = checkpoint.load(a.model, kind="full")
    with atomic_path(a.output, force=a.force, own=hf_model_dir) as tmp:
        tmp.mkdir()
        files = export_model(ck, tokenizer, tmp, dtype=a.dtype,
                             max_shard_bytes=int(a.max_shard_mb * 10**6),
                             max_positions=a.max_position_embeddings, where=a.model)
        architecture = json.loads((tmp / "config.json").read_text())["architectures"][0]
    shards = sum(f.endswith(".safetensors") for f in files)
    return f"{architecture}, {a.dtype}, {shards} safetensors file{'s' * (shards > 1)}"


def peft(a: argparse.Namespace) -> str:
    from vicuna.weights.hf_export import export_adapter

    base = needed(a, "base_model", "the base model's Hugging Face directory, which the adapter "
                                   "loads on")
    lora = checkpoint.load(a.model, kind="lora")
    with atomic_path(a.output, force=a.force, own=peft_adapter_dir) as tmp:
        tmp.mkdir()
        export_adapter(lora, base, tmp, base_name=a.base_name, where=a.model)
    return f"PEFT LoRA adapter of rank {lora['opt'].lora_rank} for {a.base_name or base}"


def gguf(a: argparse.Namespace) -> str:
    from vicuna.weights.gguf_export import export_gguf

    tokenizer = needed(a, "tokenizer_model", "the model's sentencepiece tokenizer.model, whose "
                                             "pieces the file holds")
    ck = checkpoint.load(a.model, kind="full")
    with atomic_path(a.output, force=a.force, own=gguf_file) as tmp:
        what = export_gguf(ck, tokenizer, tmp, gguf_type=a.gguf_type,
                           context=a.max_position_embeddings, name=Path(a.output).stem,
                           threads=a.threads, where=a.model)
    return f"GGUF, {what}"


FORMATS = {"ctranslate2": ctranslate2, "huggingface": huggingface, "peft": peft, "gguf": gguf}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True,
                   help="OpenNMT-py checkpoint: merged (ctranslate2, huggingface) or a LoRA step "
                        "checkpoint (peft)")
    p.add_argument("--output", required=True,
                   help="the release's directory (gguf: its file, e.g. NAME-q8_0.gguf)")
    p.add_argument("--format", choices=list(FORMATS), default="ctranslate2")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="int8_float16",
                   help="ctranslate2: weight type")
    p.add_argument("--dtype", choices=DTYPES, default="float16", help="huggingface: weight type")
    p.add_argument("--max_shard_mb", type=float, default=5000,
                   help="huggingface: safetensors files of at most this many MB (10^6 bytes), "
                        "with an index past it")
    p.add_argument("--max_position_embeddings", type=int,
                   help="huggingface, gguf: the context written to config.json or the GGUF's "
                        "context_length (default: the base's, where its config.json stated it, "
                        f"else LLaMA's {LLAMA_CONTEXT})")
    p.add_argument("--gguf_type", choices=GGUF_TYPES, default="f16",
                   help="gguf: weight type (q4_k_m by llama.cpp's own quantizer)")
    p.add_argument("--threads", type=int, default=0,
                   help="gguf: llama.cpp quantizer threads (0: all cores)")
    p.add_argument("--tokenizer_model", help="huggingface, gguf: the model's sentencepiece "
                                             "tokenizer.model, shipped with it")
    p.add_argument("--base_model", help="peft: the base's Hugging Face directory (its "
                                        "config.json is checked; adapter_config.json names it)")
    p.add_argument("--base_name", help="peft: what adapter_config.json names as the base "
                                        "(base_model_name_or_path), e.g. its Hub id; default: "
                                        "--base_model as given")
    p.add_argument("--force", action="store_true",
                   help="replace an existing release directory (never other files)")
    a = p.parse_args(argv)
    if a.max_shard_mb <= 0:
        p.error("--max_shard_mb: must be positive")
    if a.threads < 0:
        p.error("--threads: must be 0 (all cores) or more")
    if a.max_position_embeddings is not None and a.max_position_embeddings < 1:
        p.error("--max_position_embeddings: must be positive")

    # Checkpoints hold an argparse.Namespace; allow-listing it keeps weights_only loads (ours,
    # and CTranslate2's explicit one) working, without unsafe deserialization.
    onmt_fixes.allow_checkpoint_pickles()
    start = time.monotonic()
    try:
        check_output(a.output, force=a.force, own=OWN[a.format])  # before minutes of loading
        what = FORMATS[a.format](a)
    except (OSError, ValueError) as e:
        sys.exit("error: " + " ".join(str(e).split()))
    print(f"wrote {a.output} ({what}) in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
