#!/usr/bin/env python
"""Child: the chatbot's streaming path, as scripts/chatbot.py runs it: vicuna.serve.chat.build_prompt
for each message, then the `ct2` engine's `stream` (vicuna.serve.engines), up to `new_tokens` tokens
or the chat's stop. Time to the first shown text, and tokens/s while streaming.

    python benchmarks/engine_chat.py SPEC.json RESULT.json

spec: model (a CTranslate2 release), tokenizer, messages, new_tokens, threads.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import common


class CountingGenerator:
    """A CTranslate2 Generator that counts the tokens its generate_tokens yields: the engine's
    stream shows text (cut at </s> or the stop rule), the count is what it generated."""

    def __init__(self, generator: Any) -> None:
        self.generator, self.tokens = generator, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def generate_tokens(self, *args: Any, **kwargs: Any):
        inner = self.generator.generate_tokens(*args, **kwargs)

        def steps():
            try:
                for step in inner:
                    self.tokens += 1
                    yield step
            finally:
                inner.close()

        return steps()


def run(spec: dict) -> dict:
    from vicuna.serve import chat, engines, options

    n = spec["new_tokens"]
    inference = common.greedy(batch_size=1, max_length=n, cpu_threads=spec["threads"])
    opts = common.options("ct2", spec["model"], spec["tokenizer"], inference)
    engine = engines.load("ct2", opts, source="chat benchmark options")
    counter = engine.generator = CountingGenerator(engine.generator)
    context = options.context_length(engine.opts)

    def one(message: str) -> tuple[float, float, int]:
        text, _ = chat.build_prompt([], message, engine.count_tokens, context, n)
        counter.tokens = 0
        start = time.perf_counter()
        stream = engine.stream(text, engine.defaults)
        next(stream)
        first = time.perf_counter() - start
        for _ in stream:
            pass
        return first, time.perf_counter() - start, counter.tokens

    one(spec["messages"][0])  # warm-up
    runs = [one(message) for message in spec["messages"]]
    after_first = sum(t - f for f, t, _ in runs)
    return {"ttft_median": statistics.median(f for f, _, _ in runs),
            "ttft_max": max(f for f, _, _ in runs),
            "tokens": sum(k for _, _, k in runs),
            "stream_rate": sum(k - 1 for _, _, k in runs) / after_first,
            "overall_rate": sum(k for _, _, k in runs) / sum(t for _, t, _ in runs)}


if __name__ == "__main__":
    common.child_main(run)
