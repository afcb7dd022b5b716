"""Synthetic instruction data a tiny model can learn in minutes on a CPU.

The same seed gives the same records, byte for byte. Each task exists in two shapes:
an instruction record (alpaca / ShareGPT, what finetuning sees) and a plain worked example
("Reverse the order of these words.\ncat dog\ndog cat"). The base model is pretrained on
documents of several worked examples in a row, as a foundation model reads exercises on the
web: it knows the skills, but not the chat template, and after an answer it writes the next
exercise instead of stopping. Finetuning teaches the template and where a response ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from vicuna import prompt

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
    prompt.TASK,
    prompt.TASK_WITH_INPUT,
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


@dataclass(frozen=True)
class Layout:
    """How one pretraining document lays out its worked examples."""

    preamble: str  # "" or a line that opens the document
    ask: str  # before the instruction
    given: str  # before the input, when it has a line of its own
    reply: str  # before the answer
    sep: str  # between the instruction and an input on its own line

    @classmethod
    def draw(cls, rng: random.Random) -> Layout:
        ask, given, reply = rng.choice(LAYOUT_MARKERS)
        preamble = rng.choice(PREAMBLES) + rng.choice(["\n", "\n\n"]) if rng.random() < 0.5 else ""
        return cls(preamble, ask, given, reply, rng.choice(["\n", "\n\n"]))

    def worked(self, ex: Example, rng: random.Random) -> str:
        """One example: the input inline or on its own line, then the answer."""
        if rng.random() < 0.5:
            question = f"{self.ask}{ex.task.instruction} {ex.input}"
        else:
            question = f"{self.ask}{ex.task.instruction}{self.sep}{self.given}{ex.input}"
        return question + rng.choice(["\n", "\n\n"]) + self.reply + ex.output


def document(rng: random.Random, max_examples: int = 4) -> str:
    """A pretraining document: 1 to max_examples worked examples in one everyday layout,
    never the chat template. Having seen many layouts, the base finds the input and the
    answer's place in a new one, so its skills carry over to the template after finetuning;
    having seen examples follow each other, it does not stop after an answer."""
    layout = Layout.draw(rng)
    examples = [layout.worked(example(rng), rng) for _ in range(rng.randint(1, max_examples))]
    return layout.preamble + "\n\n".join(examples)


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
    seed: int, n_alpaca: int, n_sharegpt: int, n_heldout: int, n_pretrain: int,
    n_heldout_sharegpt: int = 0, n_pretrain_mmlu: int = 0,
) -> dict[str, list]:
    """All synthetic sets. Held-out sets come from their own random streams, and any held-out
    record whose (instruction, input), or conversation, also occurs in training is redrawn."""
    train_rng = random.Random(f"{seed}-train")
    alpaca = [alpaca_record(example(train_rng), train_rng) for _ in range(n_alpaca)]
    sharegpt = [sharegpt_record(i, train_rng) for i in range(n_sharegpt)]
    pretrain = [document(train_rng) for _ in range(n_pretrain)]
    exam_rng = random.Random(f"{seed}-exams")  # its own stream: the other sets stay as they were
    exams = [mc_document(exam_rng) for _ in range(n_pretrain_mmlu)]
    pretrain += [text for text, _ in exams]

    seen = {(r["instruction"], r["input"]) for r in alpaca}
    held_rng = random.Random(f"{seed}-heldout")
    heldout: list[dict[str, str]] = []
    while len(heldout) < n_heldout:
        record = alpaca_record(example(held_rng), held_rng)
        if (record["instruction"], record["input"]) not in seen:
            heldout.append(record)

    seen_talks = {str(r["conversations"]) for r in sharegpt}
    talk_rng = random.Random(f"{seed}-heldout-sharegpt")
    heldout_sharegpt: list[dict] = []
    while len(heldout_sharegpt) < n_heldout_sharegpt:
        talk = sharegpt_record(len(heldout_sharegpt), talk_rng)
        if str(talk["conversations"]) not in seen_talks:
            heldout_sharegpt.append(talk)
    return {"alpaca": alpaca, "sharegpt": sharegpt, "heldout": heldout, "pretrain": pretrain,
            "heldout_sharegpt": heldout_sharegpt,
            "exam_questions": sorted({q for _, questions in exams for q in questions})}


# --- MMLU-layout subjects (vicuna.evaluation.mmlu) --------------------------------------------------------
# Multiple-choice forms of the tasks. In `first_word` and `last_word` the word asked for is one
# of the letters, the options being the letters themselves: the answer follows from the task's
# skill (copy the word at that place). In `word_counting` the options are numbers. The base reads
# some exams in Hendrycks' layout among its pretraining text (as a foundation model reads exams on
# the web), so it knows the layout and that a letter follows "Answer:"; the test questions are
# drawn apart and never occur in those exams.
MMLU_SUBJECTS = {"first_word": "first", "last_word": "last", "word_counting": "count"}
MMLU_CHOICES = "ABCD"


def mc_question(rng: random.Random, subject: str) -> tuple[str, str, str, str, str, str]:
    """A row of an MMLU CSV file: question, options A to D, answer letter."""
    name = MMLU_SUBJECTS[subject]
    task = next(t for t in TASKS if t.name == name)
    if name == "count":
        ex = example_of(task, rng)
        options = rng.sample([str(n) for n in range(1, 7) if str(n) != ex.output], 3)
        gold = rng.randrange(len(MMLU_CHOICES))
        options.insert(gold, ex.output)
        return (f"{task.instruction} {ex.input}", *options, MMLU_CHOICES[gold])
    gold = rng.randrange(len(MMLU_CHOICES))
    words = rng.sample(WORDS, rng.randint(1, 3))
    words.insert(0 if name == "first" else len(words), MMLU_CHOICES[gold])
    return (f"{task.instruction} {' '.join(words)}", *MMLU_CHOICES, MMLU_CHOICES[gold])


def example_of(task: Task, rng: random.Random) -> Example:
    if task.kind == "numbers":
        items = [str(rng.randint(0, 9)), str(rng.randint(0, 9))]
    else:
        items = rng.sample(WORDS, rng.randint(2, 4))
    return Example(task, " ".join(items), task.answer(items))


def mc_document(rng: random.Random, max_examples: int = 5) -> tuple[str, list[str]]:
    """A pretraining exam: Hendrycks' header for one subject, then worked questions; and its
    questions."""
    from vicuna.evaluation import mmlu

    subject = rng.choice(sorted(MMLU_SUBJECTS))
    rows = [mc_question(rng, subject) for _ in range(rng.randint(1, max_examples))]
    text = mmlu.HEADER.format(mmlu.subject_words(subject)) + "".join(
        mmlu.format_question(mmlu.Question(r[0], tuple(r[1:5]), r[5]), True) for r in rows)
    return text.rstrip("\n"), [r[0] for r in rows]


def mmlu_sets(seed: int, n_dev: int, n_test: int, seen: set[str] = frozenset()
              ) -> dict[str, tuple[list[tuple], list[tuple]]]:
    """{subject: (dev rows, test rows)}; a test row whose question is in a dev row or in `seen`
    (the pretraining exams' questions) is drawn again, where the subject has that many others."""
    rng = random.Random(f"{seed}-mmlu")
    sets = {}
    for subject in sorted(MMLU_SUBJECTS):
        dev = [mc_question(rng, subject) for _ in range(n_dev)]
        taken = {row[0] for row in dev} | set(seen)
        test: list[tuple] = []
        for _ in range(100 * n_test):
            if len(test) == n_test:
                break
            row = mc_question(rng, subject)
            if row[0] not in taken:
                test.append(row)
                taken.add(row[0])
        sets[subject] = (dev, test)
    return sets
