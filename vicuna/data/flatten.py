"""Raw alpaca / ShareGPT JSON -> OpenNMT-py text: one example a line, "\\n" as ｟newline｠.

ShareGPT records are read as FastChat reads them (its clean_sharegpt.py and train.py): role
names mapped (human, user -> human; gpt, chatgpt, bard, bing, assistant -> gpt), `system`
turns dropped, a leading turn that is not a human's dropped, a trailing human turn that got no
answer dropped; a record whose turns still do not alternate is rejected, saying where. Each
repair is counted by kind. `sharegpt_html` also turns the dumps' HTML into markdown
(vicuna.data.sharegpt_html).

Bad records never vanish silently: with on_error="stop" the first one raises an error that
names the file, the record's index and its `id`; with "skip" it is left out and counted by kind.
Turns are numbered from 0, as in the record's `conversations` list.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vicuna import prompt
from vicuna.data import sharegpt_html
from vicuna.files import require_file

HUMAN = ("human", "user")
GPT = ("gpt", "chatgpt", "bard", "bing", "assistant")
SYSTEM = "system"
ROLES = {**dict.fromkeys(HUMAN, "human"), **dict.fromkeys(GPT, "gpt")}

# Repairs, by kind (the flatten report's `repaired`).
LEADING = "dropped a leading turn not from a human"
TRAILING = "dropped a trailing human turn without answer"
SYSTEM_TURN = "dropped a system turn"


class RecordError(ValueError):
    """A record that cannot become a training example; `kind` is what the skipped records are
    counted by (the message itself names the turn)."""

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind or message


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


def record_label(index: int, record: object) -> str:
    """`record 12 (id 'xyz')`: how errors name a record (its id where it has one)."""
    rid = record.get("id") if isinstance(record, dict) else None
    return f"record {index}" + (f" (id {rid!r})" if isinstance(rid, (str, int)) else "")


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


def alpaca_prompts(path: Path) -> tuple[list[str], list[str] | None]:
    """Alpaca records (`instruction`, optional `input` and `output`) as inference prompts, laid
    out in the template up to "### Response:", one a line; their outputs as references where
    every record has one (None where none has). A record with neither instruction nor the
    right types is an error naming it, as is a set where only some records have an output."""
    records = read_records(path)
    if not records:
        raise RecordError(f"{path}: no records")
    prompts, outputs = [], []
    for index, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise RecordError("record is not an object")
            instruction = _field(record, "instruction")
            if not instruction.strip():
                raise RecordError("empty 'instruction'")
            prompts.append(prompt.to_line(prompt.alpaca(
                instruction, _field(record, "input", required=False), "")))
            outputs.append(_field(record, "output", required=False))
        except RecordError as e:
            raise RecordError(f"{path}: {record_label(index, record)}: {e}") from e
    answered = [bool(o.strip()) for o in outputs]
    if any(answered) and not all(answered):
        first = answered.index(False)
        raise RecordError(f"{path}: {record_label(first, records[first])}: no 'output', where "
                          f"{sum(answered)} other records have one (references need one each, "
                          f"or none at all)")
    return prompts, [prompt.to_line(o) for o in outputs] if all(answered) else None


def _turns(record: object) -> list[tuple[int, str, str]]:
    """(index in the record, role as written, value) of each turn that is not `system`."""
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise RecordError("record has no 'conversations' list")
    turns = []
    for i, turn in enumerate(record["conversations"]):
        if not isinstance(turn, dict) or not isinstance(turn.get("from"), str):
            raise RecordError(f"turn {i} has no 'from' role", kind="a turn without a role")
        if turn["from"] == SYSTEM:
            continue
        if turn["from"] not in ROLES:
            raise RecordError(f"turn {i} is from {turn['from']!r}, neither a human "
                              f"({', '.join(HUMAN)}) nor gpt ({', '.join(GPT)})",
                              kind="a turn from an unknown role")
        if not isinstance(turn.get("value"), str):
            raise RecordError(f"turn {i}: field 'value' is missing or not a string",
                              kind="field 'value' is missing or not a string")
        turns.append((i, turn["from"], turn["value"]))
    return turns


def sharegpt_rounds(record: object, *, html: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
    """The (human, gpt) rounds of one ShareGPT record, and the repairs made to get them."""
    turns = _turns(record)
    repairs = [SYSTEM_TURN] * (len(record["conversations"]) - len(turns))
    # the role of the turn before each one (system turns left out), for the error message
    before = {i: role for (i, _, _), (_, role, _) in zip(turns[1:], turns[:-1], strict=True)}
    if turns and ROLES[turns[0][1]] != "human":
        turns, repairs = turns[1:], [*repairs, LEADING]
    if turns and ROLES[turns[-1][1]] == "human":
        turns, repairs = turns[:-1], [*repairs, TRAILING]
    if not turns:
        raise RecordError("no human/gpt round left" + (f" ({'; '.join(repairs)})" if repairs else ""),
                          kind="no human/gpt round")
    for k, (i, role, _) in enumerate(turns):
        if ROLES[role] != ("human", "gpt")[k % 2]:
            raise RecordError(f"turn {i} is from {role} after {before[i]}",
                              kind="roles do not alternate")
    rounds = []
    for (_, _, human), (j, _, gpt) in zip(turns[::2], turns[1::2], strict=True):
        if html:
            try:
                human, gpt = sharegpt_html.to_markdown(human), sharegpt_html.to_markdown(gpt)
            except ValueError as e:
                raise RecordError(f"turn {j}: {e}", kind="HTML that cannot be parsed") from None
        if not gpt.strip():
            raise RecordError(f"turn {j}: empty answer", kind="empty answer")
        rounds.append((human, gpt))
    return rounds, repairs


def sharegpt_text(record: object, *, html: bool = False) -> str:
    return prompt.conversation(sharegpt_rounds(record, html=html)[0])


def _alpaca(record: object) -> tuple[str, list[str]]:
    return alpaca_text(record), []


def _sharegpt(html: bool):
    def example(record: object) -> tuple[str, list[str]]:
        rounds, repairs = sharegpt_rounds(record, html=html)
        return prompt.conversation(rounds), repairs

    return example


# format -> record -> (text, repairs made)
FORMATS = {"alpaca": _alpaca, "sharegpt": _sharegpt(False), "sharegpt_html": _sharegpt(True)}


@dataclass
class Flattened:
    lines: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # by kind
    repaired: Counter = field(default_factory=Counter)  # by kind, in the records kept
    rejected: list[dict] = field(default_factory=list)  # each skipped record: index, id, reason

    def report(self, path: Path) -> dict:
        return {"input": str(path), "kept": len(self.lines), "skipped": sum(self.skipped.values()),
                "skipped_by_reason": dict(self.skipped), "repaired": dict(self.repaired),
                "skipped_records": self.rejected}


def flatten(path: Path, fmt: str, on_error: str = "stop") -> Flattened:
    """Lines for OpenNMT-py, with what was skipped (and why) and repaired."""
    to_example = FORMATS[fmt]
    out = Flattened()
    for index, record in enumerate(read_records(path)):
        try:
            text, repairs = to_example(record)
        except RecordError as e:
            if on_error == "stop":
                raise RecordError(f"{path}: {record_label(index, record)}: {e}") from None
            out.skipped[e.kind] += 1
            rid = record.get("id") if isinstance(record, dict) else None
            out.rejected.append({"record": index, "id": rid, "reason": str(e)})
            continue
        out.lines.append(prompt.to_line(text))
        out.repaired.update(repairs)
    if not out.lines:  # an empty training file would only fail later, far from its cause
        reasons = "; ".join(f"{n} x {reason}" for reason, n in out.skipped.most_common(3))
        raise RecordError(f"{path}: no example: every record was skipped ({reasons})" if out.skipped
                          else f"{path}: no record in it (an empty corpus)")
    return out
