#!/usr/bin/env python
"""Child: transformers' `generate` on the Hugging Face model, greedy, float32, exactly
`new_tokens` new tokens (min_new_tokens), left-padded batches; the reference the others'
greedy answers are compared with.

    python benchmarks/engine_transformers.py SPEC.json RESULT.json

spec: hf (a model folder), tokenizer, prompts (texts), new_tokens, batches, threads.
"""

from __future__ import annotations

import time

import common

PAD_ID = 0  # <unk>: only pads transformers' batches (masked out)


def run(spec: dict) -> dict:
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from vicuna import tokenizer

    common.set_torch_threads(spec["threads"])
    n = spec["new_tokens"]
    sp = tokenizer.load(spec["tokenizer"])
    model = LlamaForCausalLM.from_pretrained(spec["hf"], dtype=torch.float32).eval()
    configs = {length: GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=length, min_new_tokens=length,
        bos_token_id=common.BOS, eos_token_id=common.EOS, pad_token_id=PAD_ID) for length in (1, n)}
    ids = [[common.BOS, *sp.encode(text)] for text in spec["prompts"]]  # as engine.prompt_ids

    def generate(group: list[list[int]], length: int = n) -> list[list[int]]:
        width = max(map(len, group))  # left padding: every prompt ends where generation starts
        inputs = torch.tensor([[PAD_ID] * (width - len(x)) + x for x in group])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in group])
        with torch.inference_mode():
            out = model.generate(input_ids=inputs, attention_mask=mask, generation_config=configs[length])
        return out[:, width:].tolist()

    def timed(batch: int, length: int) -> tuple[float, list[list[int]]]:
        start = time.perf_counter()
        new = [t for i in range(0, len(ids), batch) for t in generate(ids[i:i + batch], length)]
        seconds = time.perf_counter() - start
        if any(len(t) != length for t in new):
            raise AssertionError(f"answers not of {length} tokens: {[len(t) for t in new]}")
        return seconds, new

    result: dict = {}
    for batch in spec["batches"]:
        generate(ids[:min(2, batch)])  # warm-up
        seconds, new = timed(batch, n)
        first, _ = timed(batch, 1)
        common.record(result, batch, n, len(ids), seconds, first)
        if batch == spec["batches"][0]:
            result["texts"] = [sp.decode(t) for t in new]
    return result


if __name__ == "__main__":
    common.child_main(run)
