"""Examples longer than the training length, cut into windows of whole rounds that fit
(`data.split_long`), as FastChat's split_long_conversation.py does for Vicuna; and how long an
example is, counted as OpenNMT-py's filtertoolong counts it.

A flattened line is read back into its rounds with the layout of vicuna.prompt.conversation
(the task line, then "### Instruction:" / "### Response:" rounds): the layout's pieces are
taken from that function itself, so the two cannot drift apart. Each window is laid out by the
same function: the task line, then its rounds, a valid example on its own. A literal
"\\n\\n### Instruction:\\n" inside an answer reads as a round boundary, as the chatbot's stop
rule (vicuna.prompt.STOP) reads it.

Length of an example, in the model's tokens: <s> + its sentencepiece pieces + </s>, plus, with
answer_loss_only, room for the mark before the answer of a single-round example (MARK_TOKENS; see
vicuna.train.finetune_config). filtertoolong drops an example whose pieces exceed
seq_length - 2 (it checks the target side, which gets <s> and </s>): that is, whose length
exceeds seq_length. An example that fits is written back byte for byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import sentencepiece as spm

from vicuna import loss_mask, prompt

Round = tuple[str, str]
# Tokens answer_loss_only's mark can add to a single-round example (the only ones OpenNMT-py's
# transform marks): its pad token, and one more piece when the answer, then tokenized apart,
# gives its first word sentencepiece's leading "▁".
MARK_TOKENS = 2

# Why a long example (or round) reaches no model: the counts' keys.
ONE_ROUND = "a single round over seq_length"
NOT_A_CONVERSATION = "over seq_length, not in the conversation layout"
ROUND_ALONE = "a round over seq_length on its own"
EVERY_ROUND = "every round over seq_length on its own"
FILTERED = "over seq_length (filtertoolong)"


def _layout() -> tuple[str, str, str]:
    """The layout's pieces, from prompt.conversation: what opens the first question, what sits
    between a question and its answer, and between an answer and the next question."""
    h, g = "\x00h\x00", "\x00g\x00"
    one = prompt.conversation([(h, g)])
    two = prompt.conversation([(h, g), (h, g)])
    opening, rest = one.split(h)
    answer, end = rest.split(g)
    following = two[len(one):].split(h)[0]
    assert not end and two == one + following + h + answer + g, "unexpected conversation layout"
    return opening, answer, following


OPENING, ANSWER, FOLLOWING = _layout()


def rounds_of(text: str) -> list[Round] | None:
    """The (human, gpt) rounds of an example in the conversation layout, or None."""
    if not text.startswith(OPENING):
        return None
    rounds: list[Round] = []
    pending = ""
    for chunk in text[len(OPENING):].split(FOLLOWING):
        human, sep, gpt = chunk.partition(ANSWER)
        if sep:
            rounds.append((pending + human, gpt))
            pending = ""
        elif rounds:  # no answer follows: that "### Instruction:" was inside the last answer
            rounds[-1] = (rounds[-1][0], rounds[-1][1] + FOLLOWING + chunk)
        else:
            pending += chunk + FOLLOWING
    if pending or not rounds or prompt.conversation(rounds) != text:
        return None
    return rounds


@dataclass
class SplitStats:
    """What splitting a corpus did, in examples and in tokens (the model's, as `length` counts)."""

    examples: int = 0  # lines read
    tokens: int = 0
    kept: int = 0  # lines that fit, written as they were
    kept_tokens: int = 0
    split: int = 0  # lines cut into windows
    split_tokens: int = 0  # their length before the cut
    windows: int = 0  # lines the cuts made
    window_tokens: int = 0  # their length (each window repeats the task line)
    dropped: int = 0  # lines that reach no model
    dropped_tokens: int = 0
    dropped_rounds: int = 0  # rounds left out of split lines
    dropped_round_tokens: int = 0  # each as long as a window holding only it
    dropped_by_reason: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["dropped_by_reason"] = dict(self.dropped_by_reason)
        d["training_examples"] = self.kept + self.windows
        d["training_tokens"] = self.kept_tokens + self.window_tokens
        return d


class Lengths:
    """The length of texts (see the module's docstring), with the model's tokenizer."""

    def __init__(self, sp: spm.SentencePieceProcessor, answer_marks: bool):
        self.sp, self.answer_marks = sp, answer_marks

    def of_texts(self, texts: list[str]) -> list[int]:
        # OpenNMT-py's transform marks an example whose response marker occurs once; where it
        # occurs more often, the loss mask (vicuna.loss_mask) reads the tokens and adds none
        marks = [MARK_TOKENS if self.answer_marks and text.count(loss_mask.ANSWER_START) == 1 else 0
                 for text in texts]
        return [len(ids) + 2 + m for ids, m in zip(self.sp.encode(texts), marks, strict=True)]

    def of_rounds(self, rounds: list[Round]) -> int:
        return self.of_texts([prompt.conversation(rounds)])[0]


def windows(rounds: list[Round], length: Callable[[list[Round]], int], alone: list[int],
            budget: int) -> tuple[list[list[Round]], list[int]]:
    """Consecutive rounds grouped greedily into windows with length(window) <= budget, and the
    indices of the rounds that alone do not fit (left out). `alone[i]` is length([rounds[i]]).

    The guess of how many rounds fit adds up the rounds' own lengths (a window's pieces are
    those of its rounds, give or take a token at each seam); each window is then measured
    whole and shrunk or grown one round at a time, until it fits and one more round would not."""
    base = length([])
    out, dropped, i, n = [], [], 0, len(rounds)
    while i < n:
        if alone[i] > budget:
            dropped.append(i)
            i += 1
            continue
        j, guess = i + 1, alone[i]
        while j < n and alone[j] <= budget and guess + alone[j] - base <= budget:
            guess += alone[j] - base
            j += 1
        shrunk = False
        while j > i + 1 and length(rounds[i:j]) > budget:
            j, shrunk = j - 1, True
        while not shrunk and j < n and alone[j] <= budget and length(rounds[i:j + 1]) <= budget:
            j += 1
        out.append(rounds[i:j])
        i = j
    return out, dropped


def split_lines(lines: Iterable[str], lengths: Lengths, seq_length: int, stats: SplitStats, *,
                split: bool = True, chunk: int = 512) -> Iterator[tuple[str, int]]:
    """Each training line, with its length, as OpenNMT-py will get it: a line that fits as it
    is; one that does not cut into windows (`split`), or left out as filtertoolong leaves it
    out (without `split`). `stats` counts what happened."""
    batch: list[str] = []

    def flush() -> Iterator[tuple[str, int]]:
        texts = [prompt.from_line(line) for line in batch]
        for line, text, n in zip(batch, texts, lengths.of_texts(texts), strict=True):
            stats.examples += 1
            stats.tokens += n
            if n <= seq_length:
                stats.kept += 1
                stats.kept_tokens += n
                yield line, n
            elif not split:
                _drop(stats, FILTERED, n)
            else:
                yield from _split(stats, text, n, lengths, seq_length)
        batch.clear()

    for line in lines:
        batch.append(line)
        if len(batch) == chunk:  # sentencepiece encodes a batch at once
            yield from flush()
    yield from flush()


def _drop(stats: SplitStats, reason: str, n: int) -> None:
    stats.dropped += 1
    stats.dropped_tokens += n
    stats.dropped_by_reason[reason] += 1


def _split(stats: SplitStats, text: str, n: int, lengths: Lengths,
           seq_length: int) -> Iterator[tuple[str, int]]:
    rounds = rounds_of(text)
    if rounds is None:  # Alpaca's layout with an input is one round too
        _drop(stats, ONE_ROUND if text.count(ANSWER) <= 1 else NOT_A_CONVERSATION, n)
        return
    if len(rounds) == 1:
        _drop(stats, ONE_ROUND, n)
        return
    alone = lengths.of_texts([prompt.conversation([r]) for r in rounds])
    cut, dropped = windows(rounds, lengths.of_rounds, alone, seq_length)
    if not cut:  # not one round fits: nothing of it reaches the model
        _drop(stats, EVERY_ROUND, n)
        return
    stats.split += 1
    stats.split_tokens += n
    for i in dropped:
        stats.dropped_rounds += 1
        stats.dropped_round_tokens += alone[i]
        stats.dropped_by_reason[ROUND_ALONE] += 1
    for window in cut:
        m = lengths.of_rounds(window)
        stats.windows += 1
        stats.window_tokens += m
        yield prompt.to_line(prompt.conversation(window)), m
