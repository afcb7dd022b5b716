"""Raw alpaca / ShareGPT JSON -> OpenNMT-py text: one example a line, "\\n" as ｟newline｠.

Bad records never vanish silently: with on_error="stop" the first one raises an error that
names the file and the record's index; with "skip" it is left out and counted by reason.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from vicuna import prompt
from vicuna.files import require_file

HUMAN = {"human", "user"}
GPT = {"gpt", "assistant", "chatgpt", "bard", "bing"}


class RecordError(ValueError):
    """A record that cannot become a training example."""


def read_records(path: Path) -> list:
    """A JSON array, or JSON lines (one record a line)."""
    try:
        text = require_file(path, "raw JSON corpus").read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not UTF-8 (byte {e.start})") from e
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from e
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}: invalid JSON on line {number}: {e.msg}") from e
    return records


def _field(record: dict, key: str, *, required: bool = True) -> str:
    value = record.get(key, None if required else "")
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} is missing or not a string")
    return value


def alpaca_text(record: object) -> str:
    if not isinstance(record, dict):
        raise RecordError("record is not an object")
    output = _field(record, "output")
    if not output.strip():
        raise RecordError("empty answer ('output')")
    return prompt.alpaca(
        _field(record, "instruction"), _field(record, "input", required=False), output
    )


def sharegpt_text(record: object) -> str:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise RecordError("record has no 'conversations' list")
    turns = [t for t in record["conversations"] if not (isinstance(t, dict) and t.get("from") == "system")]
    if not turns or len(turns) % 2:
        raise RecordError(f"{len(turns)} turns: expected human/gpt pairs")
    rounds = []
    for i in range(0, len(turns), 2):
        human, gpt = turns[i], turns[i + 1]
        if not (isinstance(human, dict) and human.get("from") in HUMAN):
            raise RecordError(f"turn {i} should be from a human, roles out of order")
        if not (isinstance(gpt, dict) and gpt.get("from") in GPT):
            raise RecordError(f"turn {i + 1} should be from gpt, roles out of order")
        h, g = _field(human, "value"), _field(gpt, "value")
        if not g.strip():
            raise RecordError(f"turn {i + 1}: empty answer")
        rounds.append((h, g))
    return prompt.conversation(rounds)


FORMATS = {"alpaca": alpaca_text, "sharegpt": sharegpt_text}


def flatten(path: Path, fmt: str, on_error: str = "stop") -> tuple[list[str], Counter]:
    """Lines for OpenNMT-py, and the count of skipped records by reason."""
    to_text = FORMATS[fmt]
    lines: list[str] = []
    skipped: Counter = Counter()
    for index, record in enumerate(read_records(path)):
        try:
            lines.append(prompt.to_line(to_text(record)))
        except RecordError as e:
            if on_error == "stop":
                raise RecordError(f"{path}: record {index}: {e}") from None
            skipped[str(e)] += 1
    if not lines:  # an empty training file would only fail later, far from its cause
        reasons = "; ".join(f"{n} x {reason}" for reason, n in skipped.most_common(3))
        raise RecordError(f"{path}: no example: every record was skipped ({reasons})" if skipped
                          else f"{path}: no record in it (an empty corpus)")
    return lines, skipped
