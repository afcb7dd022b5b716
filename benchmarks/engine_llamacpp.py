#!/usr/bin/env python
"""Child: llama.cpp through llama-cpp-python on a GGUF file (the workflow's release), greedy,
exactly `new_tokens` tokens per prompt (</s> does not stop it).

- batch 1: Llama.generate, the context reset before every prompt, so that it pays the prefill
  like the others;
- larger batches: the bindings' low-level llama_decode on that many sequences at once (as
  llama.cpp's `batched` example and its server's parallel slots do), since Llama holds one.

    python benchmarks/engine_llamacpp.py SPEC.json RESULT.json

spec: model (a .gguf), tokenizer, prompts (texts), new_tokens, batches, threads.
"""

from __future__ import annotations

import time
from typing import Any

import common
import cpu_probe


def run(spec: dict) -> dict:
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    from vicuna import tokenizer

    note = None
    if not cpu_probe.amx_tiles_usable():
        # Without llama.cpp's extra buffer types its AMX path is not taken; on x86 Q8_0 and
        # F32 have no other (no repacking for them), so nothing else changes.
        defaults = lib.llama_model_default_params

        def no_extra_bufts() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = no_extra_bufts
        note = ("AMX off: the CPU reports AMX but the kernel does not enable its tile data, and "
                "llama.cpp's AMX kernels die of SIGILL; loaded with use_extra_bufts=False")
    n, threads = spec["new_tokens"], spec["threads"]
    sp = tokenizer.load(spec["tokenizer"])
    ids = [[common.BOS, *sp.encode(text)] for text in spec["prompts"]]
    llm = Llama(model_path=spec["model"], n_ctx=max(map(len, ids)) + n + 16, n_batch=512,
                n_threads=threads, n_threads_batch=threads, seed=1, verbose=False)

    def generate(x: list[int], length: int = n) -> list[int]:
        llm.reset()  # no prefix reuse from the previous prompt: the prefill is paid every time
        out = []
        for token in llm.generate(x, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(token)
            if len(out) == length:
                break
        return out

    def one_by_one(length: int) -> tuple[float, list[list[int]]]:
        start = time.perf_counter()
        new = [generate(x, length) for x in ids]
        return time.perf_counter() - start, new

    result: dict[str, Any] = {"note": note}
    for batch in spec["batches"]:
        if batch == 1:
            for x in ids[:2]:
                generate(x)  # warm-up
            seconds, new = one_by_one(n)
            first, _ = one_by_one(1)
            result["texts"] = [sp.decode(t) for t in new]
        else:
            seconds, first = (batched(llm, ids, length, threads, batch) for length in (n, 1))
        common.record(result, batch, n, len(ids), seconds, first)
    return result


def batched(llm: Any, ids: list[list[int]], n: int, threads: int, batch_size: int) -> float:
    """Seconds to generate n tokens (greedy) for all prompts in chunks of `batch_size`
    sequences decoded together, on the same loaded model."""
    import llama_cpp
    import numpy as np

    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = batch_size
    params.n_ctx = batch_size * (max(map(len, ids)) + n + 16)
    params.n_batch = max(sum(sorted(map(len, ids))[-batch_size:]), batch_size)
    params.n_threads = params.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
    vocab = llm.n_vocab()

    def decode(entries: list[tuple[int, int, int, bool]]) -> list[int]:
        """(token, position, sequence, wants logits) -> the argmax of each wanted row."""
        for i, (token, pos, seq, wants) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, wants
        batch.n_tokens = len(entries)
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return [int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i),
                                          shape=(vocab,)).argmax())
                for i, e in enumerate(entries) if e[3]]

    def generate(group: list[list[int]]) -> list[list[int]]:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        last = decode([(t, pos, s, pos == len(x) - 1) for s, x in enumerate(group)
                       for pos, t in enumerate(x)])
        out = [[t] for t in last]
        for k in range(1, n):
            last = decode([(t, len(x) + k - 1, s, True)
                           for s, (x, t) in enumerate(zip(group, last, strict=True))])
            for o, t in zip(out, last, strict=True):
                o.append(t)
        return out

    try:
        generate(ids[:2])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(ids), batch_size):
            generate(ids[i:i + batch_size])
        return time.perf_counter() - start
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


if __name__ == "__main__":
    common.child_main(run)
