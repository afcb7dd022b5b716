"""The tiny base's tokenizer texts (vicuna.tiny.pretrain.tokenizer_texts): the training layouts of
vicuna.data.flatten with their checks, and corpus lines read as vicuna.files.iter_lines reads them."""

from __future__ import annotations

import json

import pytest

from vicuna import prompt
from vicuna.data import flatten
from vicuna.files import iter_lines
from vicuna.tiny import pretrain

ALPACA = [{"instruction": "Sum.", "input": "1 2", "output": "3"},
          {"instruction": "Greet.", "input": "", "output": "Hi\nthere"}]
SHAREGPT = [{"conversations": [{"from": "system", "value": "be brief"},
                               {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                               {"from": "user", "value": "bye"}, {"from": "assistant", "value": "ok"}]}]


def test_texts_are_the_training_layouts_and_the_lines(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ALPACA))
    (tmp_path / "s.json").write_text("\n".join(map(json.dumps, SHAREGPT)))  # JSON lines too
    (tmp_path / "p.txt").write_text("one｟newline｠two\nthree\u2028four\n", encoding="utf-8")
    texts = pretrain.tokenizer_texts([tmp_path / "a.json", tmp_path / "s.json", tmp_path / "p.txt"])
    assert texts == [
        prompt.alpaca("Sum.", "1 2", "3"),
        prompt.alpaca("Greet.", "", "Hi\nthere"),
        prompt.conversation([("hi", "hello"), ("bye", "ok")]),  # the system turn left out
        "one\ntwo",
        "three\u2028four",  # only "\n" ends a corpus line
    ]


@pytest.mark.parametrize(("records", "reason"), [
    ([ALPACA[0], {"instruction": "x", "input": "", "output": " "}], "record 1: empty answer"),
    ([{"id": "c7", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                                     {"from": "gpt", "value": "c"}]}],
     r"record 0 \(id 'c7'\): turn 1 is from human after human"),
])
def test_a_bad_record_is_named_by_file_and_index(tmp_path, records, reason):
    (tmp_path / "bad.json").write_text(json.dumps(records))
    with pytest.raises(flatten.RecordError, match=f"{tmp_path / 'bad.json'}: {reason}"):
        pretrain.tokenizer_texts([tmp_path / "bad.json"])


def test_iter_lines_splits_at_newlines_only(tmp_path):
    (tmp_path / "c.txt").write_bytes(b"a\rb\x0cc\nd\n\ne")
    assert list(iter_lines(tmp_path / "c.txt")) == ["a\rb\x0cc", "d", "", "e"]
