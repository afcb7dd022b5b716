"""Prompt layouts, written once: the training files and the chatbot both use these functions,
and where an answer in that layout stops (`until_stop`: the chatbot, the API, the evaluation).

OpenNMT-py reads one example a line, so every "\\n" inside an example is stored as NEWLINE.
"""

from __future__ import annotations

import re

NEWLINE = "｟newline｠"

TASK = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
TASK_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request."
)

# The model opening a next round by itself: the answer ends where that starts.
STOP = "\n\n### Instruction:"

# Characters that Python's str.splitlines() (and so many readers) treat as line breaks.
# "\r\n", "\r" and the Unicode separators are real line breaks: keep them as NEWLINE.
# The rest are control characters that would split an example silently: make them spaces.
_BREAKS = re.compile("\r\n|[\r\n\u2028\u2029\x85]")
_SPLITTERS = re.compile("[\x0b\x0c\x1c\x1d\x1e]")


def alpaca(instruction: str, input: str, output: str) -> str:
    """One alpaca record as text, with the two Alpaca templates to the character."""
    if input:
        return (
            f"{TASK_WITH_INPUT}\n\n### Instruction:\n{instruction}\n\n"
            f"### Input:\n{input}\n\n### Response:\n{output}"
        )
    return f"{TASK}\n\n### Instruction:\n{instruction}\n\n### Response:\n{output}"


def conversation(rounds: list[tuple[str, str]], next_message: str | None = None) -> str:
    """A multi-round conversation: the task line, then each round once, in order.

    `rounds` are (human, gpt) pairs. With `next_message`, the text ends with an open
    "### Response:\\n" for the model to complete: that is the chatbot's prompt.
    """
    turns = [f"### Instruction:\n{human}\n\n### Response:\n{gpt}" for human, gpt in rounds]
    if next_message is not None:
        turns.append(f"### Instruction:\n{next_message}\n\n### Response:\n")
    return TASK + "\n\n" + "\n\n".join(turns)


def to_line(text: str) -> str:
    """Text -> one line of an OpenNMT-py corpus."""
    return _SPLITTERS.sub(" ", _BREAKS.sub(NEWLINE, text))


def from_line(line: str) -> str:
    """One corpus or prediction line -> text."""
    return line.rstrip("\n").replace(NEWLINE, "\n")



def until_stop(text: str) -> tuple[str, bool]:
    """The answer part of generated text, and whether the model went past it (STOP seen).

    A trailing beginning of STOP is held back, so a stream never shows "\\n\\n###" and then
    takes it away.
    """
    head, sep, _ = text.partition(STOP)
    if sep:
        return head, True
    for n in range(len(STOP) - 1, 0, -1):
        if text.endswith(STOP[:n]):
            return text[:-n], False
    return text, False
