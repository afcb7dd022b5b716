"""Tensor names of the layouts (Meta, OpenNMT-py, Hugging Face, GGUF), written once, as data
(torchtune's convert_weights style): each table maps Meta's module names (the reference model's,
vicuna/weights/llama.py) to another layout's,
"{}" standing for the layer number. `rename` applies a table; the other direction is the same
table inverted (`invert`), so a new direction or layout is a table, not a parser.

Names are of modules: the parameter after the last dot (weight, bias, lora_A, lora_B) is kept.
"""

from __future__ import annotations

import re

import torch

# Meta -> OpenNMT-py 3.5.1
META_TO_ONMT = {
    "tok_embeddings": "decoder.embeddings.make_embedding.emb_luts.0",
    "norm": "decoder.layer_norm",
    "output": "generator",
    "layers.{}.attention.wq": "decoder.transformer_layers.{}.self_attn.linear_query",
    "layers.{}.attention.wk": "decoder.transformer_layers.{}.self_attn.linear_keys",
    "layers.{}.attention.wv": "decoder.transformer_layers.{}.self_attn.linear_values",
    "layers.{}.attention.wo": "decoder.transformer_layers.{}.self_attn.final_linear",
    "layers.{}.attention_norm": "decoder.transformer_layers.{}.layer_norm_1",
    "layers.{}.feed_forward.w1": "decoder.transformer_layers.{}.feed_forward.w_1",
    "layers.{}.feed_forward.w2": "decoder.transformer_layers.{}.feed_forward.w_2",
    "layers.{}.feed_forward.w3": "decoder.transformer_layers.{}.feed_forward.w_3",
    "layers.{}.ffn_norm": "decoder.transformer_layers.{}.feed_forward.layer_norm",
}

# Meta -> Hugging Face's LlamaForCausalLM
META_TO_HF = {
    "tok_embeddings": "model.embed_tokens",
    "norm": "model.norm",
    "output": "lm_head",
    "layers.{}.attention.wq": "model.layers.{}.self_attn.q_proj",
    "layers.{}.attention.wk": "model.layers.{}.self_attn.k_proj",
    "layers.{}.attention.wv": "model.layers.{}.self_attn.v_proj",
    "layers.{}.attention.wo": "model.layers.{}.self_attn.o_proj",
    "layers.{}.attention_norm": "model.layers.{}.input_layernorm",
    "layers.{}.feed_forward.w1": "model.layers.{}.mlp.gate_proj",
    "layers.{}.feed_forward.w2": "model.layers.{}.mlp.down_proj",
    "layers.{}.feed_forward.w3": "model.layers.{}.mlp.up_proj",
    "layers.{}.ffn_norm": "model.layers.{}.post_attention_layernorm",
}

# Meta -> llama.cpp's GGUF (architecture `llama`; gguf-py's TENSOR_NAMES). GGUF keeps Meta's
# interleaved rotary layout: llama.cpp's converter un-permutes Hugging Face's q and k rows back to
# it, so Meta's (and OpenNMT-py's, rotary_interleave) rows go in as they are.
META_TO_GGUF = {
    "tok_embeddings": "token_embd",
    "norm": "output_norm",
    "output": "output",
    "layers.{}.attention.wq": "blk.{}.attn_q",
    "layers.{}.attention.wk": "blk.{}.attn_k",
    "layers.{}.attention.wv": "blk.{}.attn_v",
    "layers.{}.attention.wo": "blk.{}.attn_output",
    "layers.{}.attention_norm": "blk.{}.attn_norm",
    "layers.{}.feed_forward.w1": "blk.{}.ffn_gate",
    "layers.{}.feed_forward.w2": "blk.{}.ffn_down",
    "layers.{}.feed_forward.w3": "blk.{}.ffn_up",
    "layers.{}.ffn_norm": "blk.{}.ffn_norm",
}

# Stored by some releases, derived by every implementation: skipped when read.
META_SKIP = ("rope.freqs",)
HF_SKIP = ("rotary_emb.inv_freq",)  # buffers in checkpoints of older transformers

# Hugging Face stores the rows of q and k permuted for its half-split rotary layout (Meta's
# rotates interleaved pairs): Meta's module -> the ModelArgs / LlamaShape field with its heads.
HF_PERMUTED = {"layers.{}.attention.wq": "n_heads", "layers.{}.attention.wk": "kv_heads"}

_LAYER = re.compile(r"\.(\d+)\.")


def invert(table: dict[str, str]) -> dict[str, str]:
    """The other direction of a table."""
    inverted = {v: k for k, v in table.items()}
    assert len(inverted) == len(table), "a name table must be one to one"
    return inverted


ONMT_TO_META = invert(META_TO_ONMT)
HF_TO_META = invert(META_TO_HF)


def template(name: str) -> tuple[str, str, str | None]:
    """`layers.3.attention.wq.weight` -> (`layers.{}.attention.wq`, `weight`, `3`): the module's
    table key, the parameter, the layer number (None outside the layers)."""
    stem, _, param = name.rpartition(".")
    layer = _LAYER.search(stem + ".")
    if layer is None:
        return stem, param, None
    return f"{stem[:layer.start()]}.{{}}.{stem[layer.end():]}".rstrip("."), param, layer.group(1)


def rename(name: str, table: dict[str, str]) -> str:
    """One tensor's name in the table's other layout; KeyError for a name it does not know."""
    stem, _, param = name.rpartition(".")
    if stem in table:  # a module outside the layers (emb_luts.0's number is no layer)
        return f"{table[stem]}.{param}"
    key, param, layer = template(name)
    if layer is None or key not in table:
        raise KeyError(name)
    return f"{table[key].format(layer)}.{param}"


def hf_permuted_heads(meta_name: str, shape) -> int | None:
    """The heads of q or k (whose rows Hugging Face permutes), None for any other tensor."""
    key, _, _ = template(meta_name)
    field = HF_PERMUTED.get(key)
    return None if field is None else getattr(shape, field)


def hf_rotary_view(meta: torch.Tensor, heads: int) -> torch.Tensor:
    """A view of Meta's q or k rows (or of a LoRA B of them) in Hugging Face's order
    (convert_llama_weights_to_hf's `permute`: within each head, the first components of the
    rotary pairs, then the second ones). Writing HF's rows into it, in order, un-permutes them
    with no copy (the converter); reading it in order (`.reshape`) permutes them (the export)."""
    rows, cols = meta.shape
    return meta.view(heads, rows // heads // 2, 2, cols).transpose(1, 2)


def meta_to_hf_rows(meta: torch.Tensor, heads: int) -> torch.Tensor:
    """Meta's q or k rows in Hugging Face's order (a new tensor)."""
    return hf_rotary_view(meta, heads).reshape(meta.shape)
