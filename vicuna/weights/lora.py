"""Merging LoRA step checkpoints into their base: W += B @ A * (alpha / r)."""

from __future__ import annotations

import copy

from vicuna.weights.shape import CONTEXT_OPTION

# Options that fix the model: a LoRA trained on another base (or with another rotary base, norm
# epsilon or window restated in its finetune config) differs in one.
ARCHITECTURE = ("dec_layers", "hidden_size", "heads", "num_kv", "transformer_ff", "rotary_theta",
                "norm_eps", "sliding_window")


def check_fits(base: dict, lora: dict) -> None:
    """A ValueError naming the option, vocabulary or tensor where `lora` was not trained on
    `base`: merging it would give a model of nonsense (or of the wrong vocabulary) silently."""
    base_vocab, lora_vocab = base["vocab"].get("src", []), lora["vocab"].get("src", [])
    if len(base_vocab) != len(lora_vocab):
        raise ValueError(f"vocabulary of {len(lora_vocab)} tokens, but the base's has "
                         f"{len(base_vocab)}: this LoRA was trained on another base model")
    if base_vocab != lora_vocab:
        i = next(i for i, (a, b) in enumerate(zip(base_vocab, lora_vocab, strict=True)) if a != b)
        raise ValueError(f"vocabulary differs from the base's at id {i} ({lora_vocab[i]!r} vs "
                         f"{base_vocab[i]!r}): this LoRA was trained on another base model")
    for key in ARCHITECTURE:
        mine, theirs = getattr(lora["opt"], key, None), getattr(base["opt"], key, None)
        if mine != theirs:
            raise ValueError(f"option {key} is {mine} but the base's is {theirs}: this LoRA "
                             f"was trained on another base model")
    if not getattr(lora["opt"], "lora_rank", 0) or getattr(lora["opt"], "lora_alpha", None) is None:
        raise ValueError("options lora_rank / lora_alpha are missing: not a LoRA step checkpoint")
    for prefix in _pairs(lora):
        _check_pair(base, lora, prefix)


def _pairs(lora: dict) -> list[str]:
    pairs = sorted(k[: -len("lora_A")] for k in lora["model"] if k.endswith(".lora_A"))
    if not pairs:
        raise ValueError("no lora_A / lora_B tensors: this is not a LoRA checkpoint")
    return pairs


def _check_pair(base: dict, lora: dict, prefix: str) -> None:
    weight = base["model"].get(prefix + "weight")
    if weight is None:
        raise ValueError(f"LoRA layer {prefix[:-1]} has no weight in the base checkpoint")
    b = lora["model"].get(prefix + "lora_B")
    if b is None:
        raise ValueError(f"tensor {prefix}lora_A has no {prefix}lora_B beside it")
    a = lora["model"][prefix + "lora_A"]
    if a.dim() != 2 or b.dim() != 2 or b.shape[1] != a.shape[0] \
            or (b.shape[0], a.shape[1]) != tuple(weight.shape):
        raise ValueError(f"tensor {prefix}lora_B {list(b.shape)} x lora_A {list(a.shape)} does "
                         f"not fit the base's {prefix}weight {list(weight.shape)}")


def merge(base: dict, lora: dict) -> dict:
    """A full checkpoint: the base's weights with the LoRA deltas added, in the base's dtype,
    and the LoRA checkpoint's options without LoRA or quantization (a plain model)."""
    check_fits(base, lora)
    opt = copy.deepcopy(lora["opt"])
    scaling = opt.lora_alpha / opt.lora_rank
    model = dict(base["model"])
    for prefix in _pairs(lora):
        weight_name = prefix + "weight"
        a, b = lora["model"][prefix + "lora_A"].float(), lora["model"][prefix + "lora_B"].float()
        w = model[weight_name]
        model[weight_name] = (w.float() + (b @ a) * scaling).to(w.dtype)
    # the base's context, which no OpenNMT-py option holds (the finetune config cannot restate it)
    setattr(opt, CONTEXT_OPTION, getattr(base["opt"], CONTEXT_OPTION, None))
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
