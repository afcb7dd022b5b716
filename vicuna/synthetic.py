"""Synthetic instruction data a tiny model can learn in minutes on a CPU.

The same seed gives the same records, byte for byte. Each task exists in two shapes:
an instruction record (alpaca / ShareGPT, what finetuning sees) and a plain line
("Reverse the order of these words.\ncat dog\ndog cat", what the base model is
pretrained on). The base thus knows the skills but not the chat template, as a foundation
model knows language but not the assistant's format; finetuning teaches the template.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

WORDS = (
    "cat dog sun moon tree fish bird rain star book milk door ball cake frog lamp ship rose "
    "snow wind"
).split()


# Pretraining layouts: (before the instruction, before the input, before the answer).
# Every word of the chat template occurs here, but never the template itself: a token the
# base never saw keeps its random embedding, which LoRA (attention only) cannot repair.
LAYOUT_MARKERS = (
    ("", "", ""),
    ("Q: ", "", "A: "),
    ("Instruction: ", "Input: ", "Answer: "),
    ("Question:\n", "", "Response:\n"),
    ("### Task\n", "### Input\n", "### Answer\n"),
    ("Request: ", "Words: ", "Reply: "),
)
PREAMBLES = (
    "Here is a small task.",
    "Below is a question. Write the answer.",
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.",
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.",
)


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    kind: str  # "words" or "numbers": what the input holds
    answer: Callable[[list[str]], str]


TASKS = (
    Task("repeat", "Repeat these words.", "words", lambda w: " ".join(w)),
    Task("reverse", "Reverse the order of these words.", "words", lambda w: " ".join(w[::-1])),
    Task("count", "How many words are there?", "words", lambda w: str(len(w))),
    Task("upper", "Write these words in capital letters.", "words", lambda w: " ".join(w).upper()),
    Task("first", "What is the first word?", "words", lambda w: w[0]),
    Task("last", "What is the last word?", "words", lambda w: w[-1]),
    Task("lines", "List these words, one per line.", "words", lambda w: "\n".join(w)),
    Task("add", "Add these two numbers.", "numbers", lambda n: str(int(n[0]) + int(n[1]))),
)


@dataclass(frozen=True)
class Example:
    task: Task
    input: str
    output: str

    def plain(self, rng: random.Random) -> str:
        """The pretraining shape: the task in a randomly drawn everyday layout (an optional
        preamble, optional markers, varied line breaks), never the chat template. Having seen
        many layouts, the base finds the input and the answer's place in a new one, as a
        foundation model does, so its skills carry over to the template after finetuning."""
        sep = rng.choice(["\n", "\n\n", " "])
        ask, given, reply = rng.choice(LAYOUT_MARKERS)
        parts = []
        if rng.random() < 0.5:
            parts.append(rng.choice(PREAMBLES) + rng.choice(["\n", "\n\n"]))
        parts.append(f"{ask}{self.task.instruction}")
        if rng.random() < 0.5:
            parts.append(f" {self.input}")
        else:
            parts.append(f"{sep}{given}{self.input}")
        parts.append(rng.choice(["\n", "\n\n"]) + reply + self.output)
        return "".join(parts)


def example(rng: random.Random) -> Example:
    task = rng.choice(TASKS)
    if task.kind == "numbers":
        items = [str(rng.randint(0, 9)), str(rng.randint(0, 9))]
    else:
        items = rng.sample(WORDS, rng.randint(2, 4))
    return Example(task, " ".join(items), task.answer(items))


def alpaca_record(ex: Example, rng: random.Random) -> dict[str, str]:
    """Half the records carry the words as `input`, half inline them in the instruction."""
    if rng.random() < 0.5:
        return {"instruction": ex.task.instruction, "input": ex.input, "output": ex.output}
    return {"instruction": f"{ex.task.instruction} {ex.input}", "input": "", "output": ex.output}


def sharegpt_record(index: int, rng: random.Random) -> dict:
    """A conversation of 2 or 3 rounds, each round one task."""
    turns = []
    for _ in range(rng.randint(2, 3)):
        ex = example(rng)
        turns.append({"from": "human", "value": f"{ex.task.instruction}\n{ex.input}"})
        turns.append({"from": "gpt", "value": ex.output})
    return {"id": f"synthetic_{index}", "conversations": turns}


def generate(
    seed: int, n_alpaca: int, n_sharegpt: int, n_heldout: int, n_pretrain: int
) -> dict[str, list]:
    """All synthetic sets. Held-out records come from their own random stream, and any
    held-out record whose (instruction, input) also occurs in training is redrawn."""
    train_rng = random.Random(f"{seed}-train")
    alpaca = [alpaca_record(example(train_rng), train_rng) for _ in range(n_alpaca)]
    sharegpt = [sharegpt_record(i, train_rng) for i in range(n_sharegpt)]
    pretrain = [example(train_rng).plain(train_rng) for _ in range(n_pretrain)]

    seen = {(r["instruction"], r["input"]) for r in alpaca}
    held_rng = random.Random(f"{seed}-heldout")
    heldout: list[dict[str, str]] = []
    while len(heldout) < n_heldout:
        record = alpaca_record(example(held_rng), held_rng)
        if (record["instruction"], record["input"]) not in seen:
            heldout.append(record)
    return {"alpaca": alpaca, "sharegpt": sharegpt, "heldout": heldout, "pretrain": pretrain}
