"""MMLU (Hendrycks et al.) as OpenNMT-py's eval_llm/MMLU/run_mmlu_opennmt.py measures it, and as
lm-eval and Hendrycks' own code do: k-shot prompts in Hendrycks' layout, scored two ways.

Data: one CSV file per subject and split, without header, rows of (question, A, B, C, D, answer
letter): `dev/<subject>_dev.csv` gives the shots (its first k rows), `test/<subject>_test.csv` the
questions; in a directory (that directory or its `data/`, as Hendrycks' data.tar unpacks) or in a
.tar / .tar.gz holding one. Scoring every subject found, a subject with one file and not the other,
or without questions, is an error naming the file (named subjects score those alone); a subject
whose dev file has fewer rows than the shots asked is scored with those (a warning; mmlu.json's
`shots_used`). Fields are read as the CSV writes them (Python's csv module: pandas,
which both scripts use, would read "None" as NaN and print it "nan").

A prompt: "The following are multiple choice questions (with answers) about" + each word of the
subject after a space + ".\\n\\n", each shot as question, "\\nA. ..." to "\\nD. ...",
"\\nAnswer: X\\n\\n", then the question ending in "\\nAnswer:". While it is over 8,192 characters
its first shot is dropped (OpenNMT-py splits on "\\n\\n" and drops the second part: the same for
a shot without a blank line in it). A prompt still over the model's context (tokens) keeps its
last tokens, as batch inference cuts prompts (vicuna.serve.inference.fit_prompt), and is counted.

Methods:
- `generate` (OpenNMT-py's): one greedy token, stripped of blanks, compared with the letter;
- `loglik` (lm-eval's, Hendrycks'): the letter whose tokens are most likely after the prompt.
"""

from __future__ import annotations

import csv
import io
import math
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vicuna import prompt
from vicuna.serve import engines, inference, options

CHOICES = ("A", "B", "C", "D")
CHAR_LIMIT = 8192  # OpenNMT-py's limit on a prompt's characters
METHODS = ("generate", "loglik")
HEADER = "The following are multiple choice questions (with answers) about {}.\n\n"


@dataclass(frozen=True)
class Question:
    question: str
    options: tuple[str, ...]
    answer: str


def parse_csv(text: str, where: str) -> list[Question]:
    """A subject's CSV rows; a named error for a row that is not question, 4 options, letter."""
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
        if not row:
            continue
        if len(row) != 2 + len(CHOICES) or row[-1].strip() not in CHOICES:
            raise ValueError(f"{where} row {number}: expected question, {len(CHOICES)} options "
                             f"and an answer letter ({'/'.join(CHOICES)}), got {row!r:.200}")
        rows.append(Question(row[0], tuple(row[1:-1]), row[-1].strip()))
    return rows


def _csv_files(path: Path) -> dict[str, tuple[str, Callable[[], str]]]:
    """{"dev/<subject>_dev.csv" or "test/...": (where, read)} of a directory or an archive."""
    files = {}
    if path.is_dir():
        root = path if (path / "test").is_dir() or not (path / "data").is_dir() else path / "data"
        for split in ("dev", "test"):
            for f in sorted((root / split).glob(f"*_{split}.csv")):
                files[f"{split}/{f.name}"] = (str(f), lambda f=f: f.read_text(encoding="utf-8"))
        return files
    if not tarfile.is_tarfile(path):
        raise ValueError(f"{path}: neither a directory nor a .tar/.tar.gz archive")
    with tarfile.open(path, "r:*") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 2 and parts[-2] in ("dev", "test") \
                    and parts[-1].endswith(f"_{parts[-2]}.csv"):
                text = tar.extractfile(member).read().decode("utf-8")
                files[f"{parts[-2]}/{parts[-1]}"] = (f"{path}:{member.name}", lambda t=text: t)
    return files


def load(path: str | Path, subjects: Iterable[str] | None = None
         ) -> dict[str, tuple[list[Question], list[Question]]]:
    """{subject: (dev rows, test rows)}: the subjects asked for, or every subject found (sorted),
    each with its dev and its test file and at least one question.

    A named error for a missing path or subject; and, where the subjects are not named, for a
    subject with one file but not the other, or without questions: leaving it out silently
    would change ACC-all. Named subjects score those alone, whatever the others lack."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such MMLU data (a directory with dev/ and test/, "
                                f"or a .tar/.tar.gz holding one)")
    files = _csv_files(path)
    found = sorted(name[len("test/"):-len("_test.csv")] for name in files
                   if name.startswith("test/") and f"dev/{name[5:-9]}_dev.csv" in files)
    if subjects:
        wanted = list(subjects)
    else:
        _check_pairs(path, files)
        wanted = found
    missing = [s for s in wanted if s not in found]
    if missing:
        raise ValueError(f"{path}: no dev/<subject>_dev.csv and test/<subject>_test.csv for "
                         f"{', '.join(missing)} (found {len(found)} subjects: "
                         f"{', '.join(found[:8])}{', ...' if len(found) > 8 else ''})")
    if not wanted:
        raise ValueError(f"{path}: no subject (no dev/<subject>_dev.csv with its "
                         f"test/<subject>_test.csv)")
    data = {}
    for subject in wanted:
        splits = []
        for split in ("dev", "test"):
            where, read = files[f"{split}/{subject}_{split}.csv"]
            splits.append(parse_csv(read(), where))
        if not splits[1]:
            raise ValueError(f"{files[f'test/{subject}_test.csv'][0]}: no question"
                             f"{'' if subjects else _NAME_SUBJECTS}")
        data[subject] = (splits[0], splits[1])
    return data


_NAME_SUBJECTS = "; name the subjects to score to leave it out (--subjects, benchmarks.mmlu.subjects)"


def _check_pairs(path: Path, files: dict[str, tuple[str, Callable[[], str]]]) -> None:
    """A named error for the first subject that has a test file without its dev file, or the
    other way round (scoring every subject found)."""
    for name in sorted(files):
        split, file = name.split("/")
        subject = file[:-len(f"_{split}.csv")]
        other = "test" if split == "dev" else "dev"
        if f"{other}/{subject}_{other}.csv" not in files:
            where = files[name][0]  # ends in `name`, in a directory as in an archive
            missing = where[:-len(name)] + f"{other}/{subject}_{other}.csv"
            raise ValueError(f"{missing}: no such file, but {where} is there: the subject "
                             f"{subject} cannot be scored{_NAME_SUBJECTS}")


# --- Hendrycks' layout --------------------------------------------------------------------------

def subject_words(subject: str) -> str:
    """"high_school_biology" -> " high school biology" (each word after a space)."""
    return "".join(f" {word}" for word in subject.split("_"))


def format_question(q: Question, with_answer: bool) -> str:
    text = q.question + "".join(f"\n{c}. {o}" for c, o in zip(CHOICES, q.options, strict=True))
    return text + "\nAnswer:" + (f" {q.answer}\n\n" if with_answer else "")


def build_prompt(subject: str, shots: list[Question], q: Question,
                 limit: int = CHAR_LIMIT) -> tuple[str, int]:
    """The question's prompt with `shots` before it, its first shots dropped while it is over
    `limit` characters; and how many shots it kept."""
    kept = len(shots)
    while True:
        text = (HEADER.format(subject_words(subject))
                + "".join(format_question(s, True) for s in shots[len(shots) - kept:])
                + format_question(q, False))
        if len(text) <= limit or kept == 0:
            return text, kept
        kept -= 1


@dataclass
class Item:
    """One test question, ready to score."""

    subject: str
    index: int  # its row in the test file, from 0
    gold: str
    prompt: str  # as the model reads it (cut to the context where it had to be)
    shots: int
    truncated: dict | None = None  # vicuna.serve.inference.fit_prompt's account of a cut


def items(data: dict[str, tuple[list[Question], list[Question]]], shots: int) -> list[Item]:
    result = []
    for subject, (dev, test) in data.items():
        for index, q in enumerate(test):
            text, kept = build_prompt(subject, dev[:shots], q)
            result.append(Item(subject, index, q.answer, text, kept))
    return result


# --- Scoring ------------------------------------------------------------------------------------

def letter_ids(sp) -> dict[str, list[int]]:
    """The tokens of each letter as it follows "Answer:" (" A": sentencepiece's "▁A" in LLaMA)."""
    return {c: sp.encode(c) for c in CHOICES}


def fit(engine: engines.Engine, batch: list[Item]) -> None:
    """Cut each prompt to the model's context, less room for the letter (as batch inference
    cuts: its last tokens), recording the cut."""
    room = max(len(ids) for ids in letter_ids(engine.sp).values())
    budget = options.context_length(engine.opts) - room
    for item in batch:
        line, item.truncated = inference.fit_prompt(engine.sp, prompt.to_line(item.prompt), budget)
        item.prompt = prompt.from_line(line)


def choose_generate(engine: engines.Engine, prompts: list[str]) -> list[str]:
    """OpenNMT-py's choice: the greedy next token (the engine's options: one token, top-k 1),
    stripped."""
    return [answer.text.strip() for answer in engine.generate(prompts)]


def choose_loglik(engine: engines.Engine, prompts: list[str]) -> list[str]:
    """The letter whose tokens are the most likely continuation (the first on a tie). Where
    each letter is one token (LLaMA's "▁A"), one pass over a prompt scores all four."""
    letters = letter_ids(engine.sp)
    if all(len(ids) == 1 for ids in letters.values()):
        totals = engine.next_logprobs([engine.prompt_ids(text) for text in prompts],
                                      [letters[c][0] for c in CHOICES])
    else:
        sequences = [engine.prompt_ids(text) + letters[c] for text in prompts for c in CHOICES]
        scores = engine.logprobs(sequences)
        totals = [[math.fsum(scores[i * len(CHOICES) + j][-len(letters[c]):])
                   for j, c in enumerate(CHOICES)] for i in range(len(prompts))]
    return [CHOICES[max(range(len(CHOICES)), key=total.__getitem__)] for total in totals]


CHOOSE = {"generate": choose_generate, "loglik": choose_loglik}


def choices(engine: engines.Engine, questions: list[Item], methods: Iterable[str] = METHODS,
            batch_size: int = 64, log: Callable[[str], None] = print) -> dict[str, list[str]]:
    """{method: the model's letter for each question}; prompts cut to the context first."""
    fit(engine, questions)
    result: dict[str, list[str]] = {m: [] for m in methods}
    for start in range(0, len(questions), batch_size):
        batch = [item.prompt for item in questions[start:start + batch_size]]
        for method in result:
            result[method] += CHOOSE[method](engine, batch)
        log(f"  {min(start + batch_size, len(questions))}/{len(questions)} questions")
    return result


def accuracy(questions: list[Item], chosen: list[str]) -> dict:
    """ACC-all (pooled over questions) and per subject, with the number of questions."""
    per: dict[str, list[int]] = {}
    for item, choice in zip(questions, chosen, strict=True):
        per.setdefault(item.subject, []).append(choice == item.gold)
    hits = sum(sum(v) for v in per.values())
    return {"acc_all": round(hits / len(questions), 4), "n": len(questions),
            "subjects": {s: {"acc": round(sum(v) / len(v), 4), "n": len(v)}
                         for s, v in per.items()}}


def shots_used(data: dict[str, tuple[list[Question], list[Question]]], shots: int,
               log: Callable[[str], None] = print) -> dict[str, int]:
    """{subject: the shots its prompts hold at most}: `shots`, or fewer where the subject's dev
    file has fewer rows (a warning each: the figures are not `shots`-shot for it). Prompts over
    CHAR_LIMIT drop more; mmlu.tsv's `shots` column has each question's."""
    used = {subject: min(shots, len(dev)) for subject, (dev, _) in data.items()}
    for subject, n in used.items():
        if n < shots:
            log(f"warning: --shots {shots}, but dev/{subject}_dev.csv has {n} rows: {subject} "
                f"is scored {n}-shot")
    return used


def evaluate(models: dict[str, Path], data: dict, shots: int, load_engine: Callable[[Path], engines.Engine],
             methods: Iterable[str] = METHODS, batch_size: int = 64,
             log: Callable[[str], None] = print) -> tuple[dict, list[str]]:
    """Both models on every question, one model in memory at a time: (mmlu.json's content,
    mmlu.tsv's rows)."""
    methods = list(methods)
    questions = items(data, shots)
    used = shots_used(data, shots, log)
    result: dict = {"shots": shots, "shots_used": used, "subjects": list(data),
                    "n": len(questions)}
    picked: dict[str, dict[str, list[str]]] = {}
    for name, path in models.items():
        log(f"{name}: {len(questions)} questions of {len(data)} subjects")
        engine = load_engine(path)
        batch = [Item(q.subject, q.index, q.gold, q.prompt, q.shots) for q in questions]
        picked[name] = choices(engine, batch, methods, batch_size, log)
        engine.close()
        cut = [item.truncated for item in batch if item.truncated]
        result[name] = {m: accuracy(batch, picked[name][m]) for m in methods}
        result[name]["prompts_cut"] = len(cut)
        result[name]["context"] = options.context_length(engine.opts)
        del engine
    rows = ["\t".join(["subject", "index", "gold", "shots",
                       *(f"{name}_{m}" for name in models for m in methods)])]
    for i, q in enumerate(questions):
        rows.append("\t".join([q.subject, str(q.index), q.gold, str(q.shots),
                               *(picked[name][m][i].replace("\t", " ") for name in models
                                 for m in methods)]))
    return result, rows
