"""Flattening alpaca and ShareGPT records into one example a line (flatten_dataset.py)."""

from __future__ import annotations

import json

import pytest
from helpers import NL, flatten, run_script

TASK = ("Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.")


TASK_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
              "further context. Write a response that appropriately completes the request.")






def test_alpaca_records_with_and_without_input(tmp_path):
    records = [
        {"instruction": "Give three tips for staying healthy.", "input": "",
         "output": "1. Eat well.\n2. Sleep."},
        {"instruction": "Add.", "input": "2 3", "output": "5"},
    ]
    _, out = flatten(tmp_path, "alpaca", records)
    assert out.read_text(encoding="utf-8").splitlines() == [
        f"{TASK}{NL}{NL}### Instruction:{NL}Give three tips for staying healthy.{NL}{NL}"
        f"### Response:{NL}1. Eat well.{NL}2. Sleep.",
        f"{TASK_INPUT}{NL}{NL}### Instruction:{NL}Add.{NL}{NL}### Input:{NL}2 3{NL}{NL}"
        f"### Response:{NL}5",
    ]


def test_sharegpt_three_rounds_in_one_example(tmp_path):
    turns = []
    for i in range(3):
        turns += [{"from": "human", "value": f"q{i}\nmore"}, {"from": "gpt", "value": f"a{i}"}]
    _, out = flatten(tmp_path, "sharegpt", [{"id": "x", "conversations": turns}])
    rounds = [f"### Instruction:{NL}q{i}{NL}more{NL}{NL}### Response:{NL}a{i}" for i in range(3)]
    assert out.read_text(encoding="utf-8").splitlines() == [TASK + NL + NL + (NL + NL).join(rounds)]


def test_line_separators_never_split_an_example(tmp_path):
    records = [{"instruction": "a\rb\u2028c\x85d\u2029e", "input": "", "output": "x\r\ny"}]
    _, out = flatten(tmp_path, "alpaca", records)
    assert len(out.read_bytes().split(b"\n")) == 2  # one line and the final newline
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


def test_json_lines_are_read_too(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"instruction": f"i{i}", "output": "o"}) for i in range(3)))
    run_script("flatten_dataset.py", "--format", "alpaca", str(src), str(tmp_path / "o.txt"))
    assert len((tmp_path / "o.txt").read_text().splitlines()) == 3


BAD = {
    "a missing field": ("alpaca", {"instruction": "x"}, "field 'output' is missing"),
    "an empty answer": ("alpaca", {"instruction": "x", "input": "", "output": " "}, "empty answer"),
    "roles out of order": ("sharegpt", {"conversations": [{"from": "human", "value": "q"},
                                                          {"from": "gpt", "value": "a"},
                                                          {"from": "gpt", "value": "b"}]},
                           "turn 2 is from gpt after gpt"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_record_stops_the_run_naming_file_and_record(tmp_path, case):
    fmt, bad, reason = BAD[case]
    good = {"alpaca": {"instruction": "i", "input": "", "output": "o"},
            "sharegpt": {"conversations": [{"from": "human", "value": "q"},
                                           {"from": "gpt", "value": "a"}]}}[fmt]
    result, out = flatten(tmp_path, fmt, [good, bad], check=False)
    assert result.returncode != 0
    assert "in.json: record 1:" in result.stderr and reason in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.json"]


def test_bad_records_can_be_skipped_and_counted(tmp_path):
    records = [{"instruction": "i", "output": "o"}, {"instruction": "x"}, {"instruction": "y"}]
    report = tmp_path / "report.json"
    result, out = flatten(tmp_path, "alpaca", records, "--on_error", "skip", "--report", str(report))
    assert len(out.read_text().splitlines()) == 1
    counts = json.loads(report.read_text())
    assert counts["kept"] == 1 and counts["skipped"] == 2
    assert counts["skipped_by_reason"] == {"field 'output' is missing or not a string": 2}


def test_bytes_that_are_not_utf8_are_refused(tmp_path):
    src = tmp_path / "in.json"
    src.write_bytes(b'[{"instruction": "caf\xe9", "output": "o"}]')
    result = run_script("flatten_dataset.py", "--format", "alpaca", str(src),
                        str(tmp_path / "o.txt"), check=False)
    assert result.returncode != 0 and "not UTF-8" in result.stderr
    assert not (tmp_path / "o.txt").exists()


def test_fifty_thousand_records_give_fifty_thousand_lines(tmp_path):
    from vicuna.tiny import synthetic

    records = synthetic.generate(3, 50_000, 1, 1, 1)["alpaca"]
    _, out = flatten(tmp_path, "alpaca", records)
    assert sum(1 for _ in out.open(encoding="utf-8")) == 50_000
