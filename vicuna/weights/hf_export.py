"""OpenNMT-py checkpoints -> Hugging Face: a LlamaForCausalLM directory (merged or base model;
MistralForCausalLM for a model with a sliding window) and a PEFT adapter (a LoRA step
checkpoint), for transformers, vLLM and peft users.

The names are the converter's tables read the other way (OpenNMT-py -> Meta -> Hugging Face,
vicuna/weights/name_maps.py), and so is the rotary layout: the rows of q and k (and the rows of their
LoRA B) are permuted into Hugging Face's half-split order, per head, with k's heads under
grouped-query attention.

Memory: each tensor leaves the checkpoint as it is written (converted, permuted, then freed), and
safetensors files are written tensor by tensor after a header computed from the shapes
(vicuna/weights/safetensors_writer.py): the job holds the checkpoint and one tensor, never the
model twice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from vicuna import prompt, tokenizer
from vicuna.files import write_json
from vicuna.weights.convert import vocabulary
from vicuna.weights.layout import read_json
from vicuna.weights.name_maps import (
    META_TO_HF,
    META_TO_ONMT,
    ONMT_TO_META,
    hf_permuted_heads,
    meta_to_hf_rows,
    rename,
)
from vicuna.weights.safetensors_writer import Pending, shards, write_safetensors
from vicuna.weights.shape import LLAMA_CONTEXT, LlamaShape, meta_shapes

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
WEIGHTS, INDEX = "model.safetensors", "model.safetensors.index.json"
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
SPECIAL_TOKENS = {"bos_token": tokenizer.BOS, "eos_token": tokenizer.EOS, "unk_token": tokenizer.UNK}
HF_INDENT = 2  # transformers writes its JSON files so
PEFT_PREFIX = "base_model.model."  # PeftModel wraps LlamaForCausalLM


def write_weights(out_dir: Path, tensors: list[Pending], max_bytes: int, what: str,
                  progress: bool | None = None) -> list[str]:
    """model.safetensors, or model-0000k-of-0000n.safetensors + model.safetensors.index.json
    past max_bytes; returns the files written."""
    groups = shards(tensors, max_bytes)
    names = [WEIGHTS] if len(groups) == 1 else [
        f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors" for k in range(len(groups))]
    with tqdm(total=len(tensors), desc=what, unit="tensor",
              disable=None if progress is None else not progress) as bar:
        for name, group in zip(names, groups, strict=True):
            write_safetensors(out_dir / name, group, bar)
    if len(groups) > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)},
                 "weight_map": {t.name: name for name, group in zip(names, groups, strict=True)
                                for t in group}}
        write_json(out_dir / INDEX, index, indent=HF_INDENT)
        names.append(INDEX)
    return names


def tokenizer_files(out_dir: Path, tokenizer_model: Path, max_positions: int) -> list[str]:
    """tokenizer.model, tokenizer_config.json (LLaMA's sentencepiece tokenizer, <s> added to a
    plain text as the workflow's engines add it, the chat template) and special_tokens_map.json."""
    shutil.copyfile(tokenizer_model, out_dir / "tokenizer.model")
    write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        **SPECIAL_TOKENS,
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,  # transformers 4.x: sentencepiece's own behaviour, as the workflow's
        "model_max_length": max_positions,
        "padding_side": "left",
        "chat_template": prompt.chat_template(),
    }, indent=HF_INDENT)
    write_json(out_dir / "special_tokens_map.json", SPECIAL_TOKENS, indent=HF_INDENT)
    return ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"]


# ---------------------------------------------------------------------------------------------
# A full model


def check_vocabulary(checkpoint: dict, tokenizer_model: Path, where: str) -> None:
    """The tokenizer must be the checkpoint's: the export ships it as the model's."""
    pieces, vocab = vocabulary(tokenizer_model), checkpoint["vocab"]["src"]
    if len(pieces) != len(vocab) or pieces != vocab:
        raise ValueError(f"{tokenizer_model}: not the tokenizer of {where} (its {len(pieces)} "
                         f"pieces are not the checkpoint's vocabulary of {len(vocab)})")


def checked_names(checkpoint: dict, shape: LlamaShape, where: str,
                  target: str = "LlamaForCausalLM") -> dict[str, str]:
    """Meta's name -> the checkpoint's (OpenNMT-py's, `generator.` for the output layer) of
    every tensor of a full checkpoint, once each is checked to be there with the shape the
    options imply; anything else (a LoRA step checkpoint, an output bias `target` cannot hold,
    a missing or extra tensor) is refused naming it."""
    tensors = {**checkpoint["model"], **{f"generator.{k}": v
                                         for k, v in checkpoint["generator"].items()}}
    bias = tensors.pop("generator.bias", None)
    if bias is not None and bool(bias.any()):
        raise ValueError(f"{where}: the output layer has a bias, which {target} has not")
    expected = meta_shapes(shape)
    onmt = {}
    for name in tensors:
        try:
            onmt[rename(name, ONMT_TO_META)] = name
        except KeyError:
            raise ValueError(f"{where}: tensor {name} is not a LLaMA's (a LoRA step "
                             "checkpoint? merge it first)") from None
    for meta, want in expected.items():
        if meta not in onmt:
            raise ValueError(f"{where}: tensor {rename(meta, META_TO_ONMT)} is missing")
        got = tuple(tensors[onmt[meta]].shape)
        if got != want:
            raise ValueError(f"{where}: {onmt[meta]} has shape {got}, its options imply {want}")
    if len(onmt) != len(expected):
        raise ValueError(f"{where}: tensors {sorted(set(onmt) - set(expected))[:3]} are not "
                         "the options' model")
    return onmt


def source_tensor(checkpoint: dict, onmt_name: str) -> torch.Tensor:
    """Take one tensor (named as checked_names names it) out of the checkpoint."""
    if onmt_name.startswith("generator."):
        return checkpoint["generator"].pop(onmt_name.removeprefix("generator."))
    return checkpoint["model"].pop(onmt_name)


def model_order(shape: LlamaShape) -> list[str]:
    """Meta's tensor names in the model's order: the embedding, each layer's, the norm, the
    output layer."""
    expected = meta_shapes(shape)
    layers = [f"layers.{i}." for i in range(shape.n_layers)]
    return ["tok_embeddings.weight",
            *(m for prefix in layers for m in expected if m.startswith(prefix)),
            "norm.weight", "output.weight"]


def model_tensors(checkpoint: dict, shape: LlamaShape, dtype: torch.dtype,
                  where: str) -> list[Pending]:
    """The Hugging Face tensors of a full OpenNMT-py checkpoint, in the model's order; each one
    leaves the checkpoint when it is made."""
    onmt = checked_names(checkpoint, shape, where)
    expected = meta_shapes(shape)

    def make(meta: str) -> Callable[[], torch.Tensor]:
        def tensor() -> torch.Tensor:
            w = source_tensor(checkpoint, onmt[meta])
            heads = hf_permuted_heads(meta, shape)
            if heads is not None:
                w = meta_to_hf_rows(w, heads)
            return w.to(dtype)
        return tensor

    return [Pending(rename(m, META_TO_HF), expected[m], dtype, make(m))
            for m in model_order(shape)]


def export_model(checkpoint: dict, tokenizer_model: str | Path, out_dir: str | Path, *,
                 dtype: str = "float16", max_shard_bytes: int = 5 * 10**9,
                 max_positions: int | None = None, where: str = "checkpoint",
                 progress: bool | None = None) -> list[str]:
    """A full OpenNMT-py checkpoint (converted or merged) as a LlamaForCausalLM directory in
    `out_dir` (which must exist, empty), MistralForCausalLM where the model has a sliding
    window: config.json, generation_config.json, the weights in `dtype`, the tokenizer.
    max_positions: the context config.json states (default: the base's, where its config said,
    else LLaMA's 2048). Everything is checked before anything is written; the checkpoint is
    emptied on the way. Returns the files written."""
    tokenizer_model, out_dir = Path(tokenizer_model), Path(out_dir)
    shape = LlamaShape.from_opt(checkpoint["opt"], len(checkpoint["vocab"]["src"]), where)
    max_positions = max_positions or shape.context or LLAMA_CONTEXT
    check_vocabulary(checkpoint, tokenizer_model, where)
    tensors = model_tensors(checkpoint, shape, DTYPES[dtype], where)
    write_json(out_dir / "config.json", shape.to_config(dtype, max_positions), indent=HF_INDENT)
    write_json(out_dir / "generation_config.json",
               {"bos_token_id": tokenizer.BOS_ID, "eos_token_id": tokenizer.EOS_ID}, indent=HF_INDENT)
    files = ["config.json", "generation_config.json"]
    files += tokenizer_files(out_dir, tokenizer_model, max_positions)
    files += write_weights(out_dir, tensors, max_shard_bytes, "tensors", progress)
    return files


# ---------------------------------------------------------------------------------------------
# A PEFT adapter


def _hf_module(onmt_module: str) -> str:
    """decoder.transformer_layers.0.self_attn.linear_query -> model.layers.0.self_attn.q_proj"""
    return rename(rename(onmt_module + ".x", ONMT_TO_META), META_TO_HF)[:-2]


def export_adapter(lora: dict, base_dir: str | Path, out_dir: str | Path, *,
                   base_name: str | None = None, where: str = "checkpoint") -> list[str]:
    """An OpenNMT-py LoRA step checkpoint as a PEFT adapter (adapter_config.json and
    adapter_model.safetensors) for the LlamaForCausalLM in `base_dir`, whose config.json must
    be the shape the adapter was trained on. LoRA B of q and k gets the base's row permutation;
    A multiplies the (unpermuted) hidden state and is kept. base_name: what adapter_config.json
    names as its base (the directory as given, by default)."""
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    opt = lora["opt"]
    shape = LlamaShape.from_opt(opt, len(lora["vocab"]["src"]), where)
    config_path = base_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing (the base in Hugging Face's layout)")
    base = LlamaShape.from_config(read_json(config_path), config_path)
    fields = ("dim", "n_layers", "n_heads", "kv_heads", "hidden_dim", "vocab_size", "rope_theta",
              "norm_eps", "sliding_window")
    for field in fields:
        if getattr(base, field) != getattr(shape, field):
            raise ValueError(f"{config_path}: {field} is {getattr(base, field)}, but {where} was "
                             f"trained on a base with {getattr(shape, field)}: another base")
    expected = meta_shapes(shape)
    pairs = sorted({k.rsplit(".", 1)[0] for k in lora["model"] if k.endswith((".lora_A",
                                                                                ".lora_B"))})
    if not pairs or len(lora["model"]) != 2 * len(pairs):
        raise ValueError(f"{where}: not a LoRA step checkpoint (lora_A / lora_B pairs only)")
    rank, tensors, modules = opt.lora_rank, [], set()
    for module in pairs:
        meta = rename(module + ".weight", ONMT_TO_META)
        out_features, in_features = expected[meta]
        a, b = lora["model"].get(module + ".lora_A"), lora["model"].get(module + ".lora_B")
        if a is None or b is None or tuple(a.shape) != (rank, in_features) \
                or tuple(b.shape) != (out_features, rank):
            raise ValueError(f"{where}: {module} lora_A / lora_B do not fit a rank-{rank} "
                             f"adapter of a {out_features} x {in_features} weight")
        heads = hf_permuted_heads(meta, shape)
        if heads is not None:
            b = meta_to_hf_rows(b, heads)
        hf = PEFT_PREFIX + _hf_module(module)
        modules.add(hf.rsplit(".", 1)[-1])
        for part, t in (("lora_A", a), ("lora_B", b)):
            tensors.append(Pending(f"{hf}.{part}.weight", tuple(t.shape), t.dtype,
                                   lambda t=t: t))
    write_json(out_dir / ADAPTER_CONFIG, {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name if base_name is not None else str(base_dir),
        "r": rank,
        "lora_alpha": opt.lora_alpha,  # OpenNMT-py's scaling is alpha / r, as peft's
        "lora_dropout": opt.lora_dropout,
        "target_modules": sorted(modules),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }, indent=HF_INDENT)
    write_safetensors(out_dir / ADAPTER_WEIGHTS, tensors)
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
