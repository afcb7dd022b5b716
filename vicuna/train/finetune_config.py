"""The OpenNMT-py finetuning config (the tutorial's replicate_vicuna.yaml), built from config.yaml.

With LoRA, OpenNMT-py applies `lora_layers` / `quant_layers` only under `override_opts: true`,
and then every architecture option of the base model must be restated: they come from
params.json (or config.json) through `vicuna.weights.shape.architecture()`, the converter's own, so the
two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from vicuna import loss_mask, tokenizer
from vicuna.weights.shape import LlamaShape, architecture

TRANSFORMS = ["sentencepiece", "filtertoolong"]
# With answer_loss_only: OpenNMT-py's placeholder transform marks where the answer starts in a
# single-round example (the tokenizer turns the mark into a pad token), and zero_out_prompt_loss
# drops the loss before it. The transform puts no mark where the pattern occurs twice or more:
# vicuna.onmt_fixes.mask_every_answer then masks such rows itself, the loss on every answer
# (vicuna.loss_mask). The pattern is the layout's own response marker (vicuna.prompt).
ANSWER_MARK = "insert_mask_before_placeholder"
RESPONSE_PATTERN = loss_mask.RESPONSE_PATTERN


def finetune_config(
    *,
    shape: LlamaShape,
    vocab_size: int,
    corpora: dict[str, dict[str, Any]],
    valid: str | None,
    tokenizer_model: str,
    vocab: str,
    base_checkpoint: str,
    save_model: str,
    tensorboard_dir: str,
    train: dict[str, Any],
) -> dict[str, Any]:
    """`corpora` maps a corpus name to {"path": ..., "weight": ...}; `train` is config.yaml's
    `train` section."""
    lora, quant = train["lora"], train["quantization"]
    if quant["layers"] and not quant["type"]:
        # Since 3.5.0 an empty quant_type silently quantizes nothing.
        raise ValueError("train.quantization.type: must be set when quantization.layers is not empty")
    answers_only = train.get("answer_loss_only", False)
    mark = [ANSWER_MARK] if answers_only else []
    data = {
        name: {"path_src": c["path"], "transforms": mark + TRANSFORMS, "weight": c["weight"]}
        for name, c in corpora.items()
    }
    if valid:  # validated the same way, or its loss would be masked away entirely
        data["valid"] = {"path_src": valid, "transforms": mark + ["sentencepiece"]}
    seq = train["seq_length"]
    cfg: dict[str, Any] = {
        "data": data,
        "src_subword_model": tokenizer_model,
        "tgt_subword_model": tokenizer_model,
        "src_seq_length": seq,
        "tgt_seq_length": seq,
        "skip_empty_level": "silent",
        # General
        "train_from": base_checkpoint,
        # The converted checkpoint has no optimizer state; "all" makes OpenNMT-py take the
        # optimizer options below rather than the checkpoint's defaults (learning_rate 1.0).
        "reset_optim": "all",
        "save_model": save_model,
        "keep_checkpoint": train["keep_checkpoint"],
        "save_checkpoint_steps": train["save_checkpoint_steps"],
        "seed": train["seed"],
        "report_every": train["report_every"],
        "train_steps": train["train_steps"],
        "valid_steps": train["valid_steps"],
        "tensorboard": True,
        "tensorboard_log_dir": tensorboard_dir,
        # Batching
        "bucket_size": train["bucket_size"],
        "num_workers": train["num_workers"],
        "batch_type": "tokens",
        "batch_size": train["batch_size"],
        "valid_batch_size": train["valid_batch_size"],
        "batch_size_multiple": 1,
        "accum_count": [train["accum_count"]],
        "accum_steps": [0],
        # Vocabulary: the base model's
        "override_opts": True,
        "share_vocab": True,
        "src_vocab": vocab,
        "src_vocab_size": vocab_size,
        "tgt_vocab_size": vocab_size,
        "decoder_start_token": tokenizer.BOS,
        # Optimization
        "model_dtype": train["precision"],
        "apex_opt_level": "",
        "optim": train["optim"],
        "learning_rate": train["learning_rate"],
        "warmup_steps": train["warmup_steps"],
        "decay_method": "none",
        "adam_beta2": train["adam_beta2"],
        "max_grad_norm": train["max_grad_norm"],
        "label_smoothing": 0.0,
        "param_init": 0.0,
        "param_init_glorot": True,
        "normalization": "tokens",
        # LoRA attention (8-bit feed-forward below)
        "lora_layers": list(lora["layers"]),
        "lora_rank": lora["rank"],
        "lora_dropout": lora["dropout"],
        "lora_alpha": lora["alpha"],
        "lora_embedding": False,
        # Model: restated from the base's params.json / config.json
        **architecture(shape),
        "dropout": [0.0],
        "attention_dropout": [0.0],
        "dropout_steps": [0],
    }
    if answers_only:
        cfg["zero_out_prompt_loss"] = True
        cfg["response_patterns"] = [RESPONSE_PATTERN]
    if quant["layers"]:  # an empty list is a parse error in OpenNMT-py's yaml
        cfg["quant_layers"] = list(quant["layers"])
        cfg["quant_type"] = quant["type"]
    return cfg

