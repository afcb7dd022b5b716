"""Merging LoRA step checkpoints into their base: W += B @ A * (alpha / r)."""

from __future__ import annotations

import copy


def merge(base: dict, lora: dict) -> dict:
    """A full checkpoint: the base's weights with the LoRA deltas added, in the base's dtype,
    and the LoRA checkpoint's options without LoRA or quantization (a plain model)."""
    opt = copy.deepcopy(lora["opt"])
    scaling = opt.lora_alpha / opt.lora_rank
    model = dict(base["model"])
    pairs = sorted(k[: -len("lora_A")] for k in lora["model"] if k.endswith(".lora_A"))
    if not pairs:
        raise ValueError("no lora_A / lora_B tensors: this is not a LoRA checkpoint")
    for prefix in pairs:
        weight_name = prefix + "weight"
        if weight_name not in model:
            raise ValueError(f"LoRA layer {prefix[:-1]} has no weight in the base checkpoint")
        a, b = lora["model"][prefix + "lora_A"].float(), lora["model"][prefix + "lora_B"].float()
        w = model[weight_name]
        model[weight_name] = (w.float() + (b @ a) * scaling).to(w.dtype)
    opt.lora_layers, opt.lora_embedding = [], False
    opt.quant_layers, opt.quant_type = [], ""
    opt.train_from = None
    return {
        "model": model,
        # LoRA checkpoints hold no generator: the base's (frozen in training) is the one.
        "generator": base["generator"],
        "vocab": base["vocab"],
        "opt": opt,
        "optim": None,
    }


def lora_layer_count(lora: dict) -> int:
    return sum(1 for k in lora["model"] if k.endswith(".lora_A"))

