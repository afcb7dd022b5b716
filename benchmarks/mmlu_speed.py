"""MMLU's `loglik` scoring, one pass against four, side by side in one run: the py engine's
`next_logprobs` (the prompt run once, the four letters read off its last position) against the
generic way it replaced (each letter appended and the four sequences scored), on the same
questions of one random LLaMA at 7B's width, CPU.

    .venv/bin/python benchmarks/mmlu_speed.py [--dim 4096 --layers 1 --questions 24 --shots 5]

The questions are the tiny default's synthetic MMLU-layout subjects (vicuna.tiny.synthetic.mmlu_sets,
Hendrycks' layout); their prompts are shorter than MMLU's, about 150 tokens at 5 shots. Both ways
must choose the same letters; the figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import models
import torch

from vicuna.evaluation import mmlu
from vicuna.serve import engines
from vicuna.tiny import synthetic


def questions(shots: int, n: int) -> list[mmlu.Item]:
    per_subject = -(-n // len(synthetic.MMLU_SUBJECTS))
    data = {subject: tuple([mmlu.Question(r[0], tuple(r[1:5]), r[5]) for r in rows]
                           for rows in splits)
            for subject, splits in synthetic.mmlu_sets(0, shots, per_subject).items()}
    return mmlu.items(data, shots)[:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--questions", type=int, default=24)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=8, help="prompts a call")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmlu_speed_") as tmp:
        built = models.build(Path(tmp), a.dim, a.layers, quantizations=(), heads=a.dim // 128)
        opts = engines.scoring_options("py", built["onmt"], built["tokenizer"], "cpu", "fp32",
                                       batch_size=a.batch_size)
        engine = engines.load("py", opts, source="benchmark")
        items = questions(a.shots, a.questions)
        mmlu.fit(engine, items)
        letters = mmlu.letter_ids(engine.sp)
        if not all(len(ids) == 1 for ids in letters.values()):
            sys.exit("error: the tokenizer's letters are not one token each: no one-pass scoring")
        candidates = [letters[c][0] for c in mmlu.CHOICES]
        sequences = [engine.prompt_ids(item.prompt) for item in items]
        ways = {"one pass (next_logprobs)": engine.next_logprobs,
                "four sequences (logprobs)": lambda s, c: engines.Engine.next_logprobs(engine, s, c)}
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        picked: dict[str, list[int]] = {}
        for _ in range(a.repeats):  # interleaved: both ways see the same machine
            for name, way in ways.items():
                start = time.perf_counter()
                scores = []
                for i in range(0, len(sequences), a.batch_size):
                    scores += way(sequences[i:i + a.batch_size], candidates)
                seconds[name].append(time.perf_counter() - start)
                picked[name] = [max(range(4), key=row.__getitem__) for row in scores]
        engine.close()
    lengths = [len(s) for s in sequences]
    print(f"dim {a.dim}, {a.layers} layer(s), {built['params'] / 1e6:.0f} M parameters; "
          f"{len(items)} questions at {a.shots} shots, prompts of {min(lengths)}-{max(lengths)} "
          f"tokens (mean {statistics.mean(lengths):.0f}); {torch.get_num_threads()} threads")
    print(f"| scoring | s per question (median of {a.repeats}) | |\n|---|---|---|")
    base = statistics.median(seconds["four sequences (logprobs)"])
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"| {name} | {median / len(items):.3f} | {base / median:.2f}x |")
    same = picked["one pass (next_logprobs)"] == picked["four sequences (logprobs)"]
    print(f"same letters chosen: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
