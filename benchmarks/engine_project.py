#!/usr/bin/env python
"""Child: the project's own engines, `py`, `ct2` or `gguf`, through vicuna.serve.engines (as batch inference,
the chatbot and the API load them), on options written by vicuna.serve.engines.options_file from
config.yaml's inference keys (common.greedy), every answer forced to `new_tokens` tokens.

    python benchmarks/engine_project.py SPEC.json RESULT.json     (run by peers.py / real_width.py)

spec: mode, model (a path), tokenizer, prompts (texts), new_tokens, batches, threads, and
optionally inference (config keys to change, e.g. compute_type). The prompts are generated in
chunks of each batch size; the first two are generated once before the clock starts.
"""

from __future__ import annotations

import time

import common


def run(spec: dict) -> dict:
    from vicuna.serve import engines

    common.set_torch_threads(spec["threads"])
    n, prompts, batches = spec["new_tokens"], spec["prompts"], spec["batches"]
    inference = common.greedy(batch_size=max(batches), cpu_threads=spec["threads"],
                              **spec.get("inference", {}))
    opts = common.options(spec["mode"], spec["model"], spec["tokenizer"], inference, forced=n)
    engine = engines.load(spec["mode"], opts, source=f"{spec['mode']} benchmark options")

    def generate(batch: int, length: int) -> tuple[float, list]:
        # min_length (n, from the options) keeps </s> out; OpenNMT-py's translator stops at
        # max_length whatever min_length says, CTranslate2 refuses a min_length above it
        exact = spec["mode"] in ("ct2", "gguf")  # they honour min_length
        settings = {"max_length": length, **({"min_length": length} if exact else {})}
        start = time.perf_counter()
        answers = [a for i in range(0, len(prompts), batch)
                   for a in engine.generate(prompts[i:i + batch], settings)]
        seconds = time.perf_counter() - start
        # ct2 and gguf count their pieces; py re-encodes its text (about `length` each, not exact)
        if exact and any(a.tokens != length for a in answers):
            raise AssertionError(f"answers not of {length} tokens: {[a.tokens for a in answers]}")
        return seconds, answers

    out: dict = {"answer_tokens": {}}
    for batch in batches:
        engine.generate(prompts[:min(2, batch)])  # warm-up
        seconds, answers = generate(batch, n)
        prefill, _ = generate(batch, 1)
        common.record(out, batch, n, len(prompts), seconds, prefill)
        out["answer_tokens"][batch] = sum(a.tokens for a in answers)
        if batch == batches[0]:
            out["texts"] = [a.text for a in answers]
    engine.close()
    return out


if __name__ == "__main__":
    common.child_main(run)
