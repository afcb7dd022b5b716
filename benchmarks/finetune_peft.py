#!/usr/bin/env python
"""Child: LoRA finetuning with transformers + peft on the Hugging Face model, the same LoRA
(the config's layers, rank, alpha, dropout: finetune_ours.train_section), Adam, the same token
sequences as the workflow's run, `sequences` of them a step; optionally under
torch.autocast(cpu, bfloat16) (lower-precision compute: measured, with the loss it reaches).

    python benchmarks/finetune_peft.py SPEC.json RESULT.json

spec: hf, tokenizer, data, lora (the config's train.lora), sequences, warmup, steps,
learning_rate, threads, autocast (null or "bfloat16").
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import common

# OpenNMT-py's LoRA layer names (config train.lora.layers) -> transformers' LlamaAttention's
HF_NAMES = {"linear_query": "q_proj", "linear_keys": "k_proj", "linear_values": "v_proj",
            "final_linear": "o_proj"}


def run(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from vicuna import tokenizer

    common.set_torch_threads(spec["threads"])
    b, lora = spec["sequences"], spec["lora"]
    sp = tokenizer.load(spec["tokenizer"])
    lines = Path(spec["data"]).read_text(encoding="utf-8").splitlines()
    model = LlamaForCausalLM.from_pretrained(spec["hf"], dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(
        r=lora["rank"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], bias="none",
        target_modules=[HF_NAMES[name] for name in lora["layers"]]))
    model.train()
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                             lr=spec["learning_rate"], betas=(0.9, 0.998))
    dtype = spec.get("autocast")
    losses = []

    def step(i: int) -> int:
        # OpenNMT-py's LM: the model reads <s> + pieces and predicts pieces + </s>
        pieces = [sp.encode(line) for line in lines[i * b:(i + 1) * b]]
        inputs = torch.tensor([[common.BOS, *p] for p in pieces])
        targets = torch.tensor([[*p, common.EOS] for p in pieces])
        cast = (torch.autocast("cpu", dtype=getattr(torch, dtype)) if dtype
                else contextlib.nullcontext())
        with cast:
            logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        losses.append(loss.item())
        return targets.numel()

    for i in range(spec["warmup"]):
        step(i)
    start = time.perf_counter()
    tokens = sum(step(spec["warmup"] + i) for i in range(spec["steps"]))
    seconds = time.perf_counter() - start
    return {"rate": tokens / seconds, "tokens": tokens, "seconds": seconds,
            "tokens_per_step": tokens // spec["steps"], "losses": losses}


if __name__ == "__main__":
    common.child_main(run)
