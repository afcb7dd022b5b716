"""data.split_long (vicuna.data.split_long, scripts/split_long.py): an example over seq_length is cut
into windows of whole rounds, each the task line and then its rounds, each one that OpenNMT-py's
own filtertoolong keeps; a round that alone does not fit is dropped and counted. The oracle for
"fits" is OpenNMT-py's sentencepiece + filtertoolong transforms, run in-process."""

from __future__ import annotations

import json
import random

import pytest
from helpers import LLAMA_TOKENIZER, run_script

from vicuna import prompt, tokenizer
from vicuna.data import split_long
from vicuna.files import iter_lines

TASK_LINE = prompt.TASK + "｟newline｠｟newline｠### Instruction:｟newline｠"
WORDS = ("the river city empire grew trade roads stone bridge winter harvest market law people "
         "ships north south wall tower king queen war peace bread salt iron gold").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def rounds(seed: int, n: int, words: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(f"Question {i}: {sentence(rng, words // 3)}\nAnd more?",
             f"Answer {i}:\n{sentence(rng, words)}\n{sentence(rng, words // 2)}") for i in range(n)]


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory):
    """A LLaMA-style tokenizer of our own (vicuna.tokenizer.train), from texts of these words."""
    rng = random.Random(0)
    texts = [prompt.conversation(rounds(s, 3, 30)) for s in range(40)]
    texts += [sentence(rng, 20) for _ in range(200)]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    tokenizer.train(texts, 400, path)
    return path


TOKENIZERS = [
    pytest.param("llama", marks=pytest.mark.skipif(not LLAMA_TOKENIZER.is_file(),
                                                  reason="real LLaMA tokenizer fixture absent")),
    "small",
]


@pytest.fixture(params=TOKENIZERS)
def model_tokenizer(request, small_tokenizer):
    return LLAMA_TOKENIZER if request.param == "llama" else small_tokenizer


def onmt_keeps(tokenizer_model, seq_length: int, lines: list[str], *, mark: bool = False) -> list[bool]:
    """Whether OpenNMT-py's own transforms, as the finetuning config lists them, keep each line
    (an LM corpus: src and tgt are the same line)."""
    from onmt.transforms import TransformPipe, get_transforms_cls, make_transforms
    from onmt.utils.parse import ArgumentParser

    from vicuna.train.finetune_config import ANSWER_MARK, RESPONSE_PATTERN, TRANSFORMS

    names = ([ANSWER_MARK] if mark else []) + TRANSFORMS
    classes = get_transforms_cls(names)
    parser = ArgumentParser()
    for cls in classes.values():
        cls.add_options(parser)
    opts = parser.parse_args(["-src_subword_model", str(tokenizer_model), "-tgt_subword_model",
                              str(tokenizer_model), "-src_seq_length", str(seq_length),
                              "-tgt_seq_length", str(seq_length),
                              *(["-response_patterns", RESPONSE_PATTERN] if mark else [])])
    opts.share_vocab, opts.seed = True, 1
    transforms = make_transforms(opts, classes, None)
    pipe = TransformPipe.build_from([transforms[name] for name in names])
    kept = []
    for line in lines:
        words = line.strip().split(" ")
        kept.append(pipe.apply({"src": list(words), "tgt": list(words), "src_original": words,
                                "tgt_original": words}, is_train=True) is not None)
    return kept


def split(tmp_path, tokenizer_model, lines: list[str], seq_length: int, *extra: str):
    src, out, report = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "report.json"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    result = run_script("split_long.py", "--tokenizer_model", str(tokenizer_model), "--seq_length",
                        str(seq_length), "--report", str(report), *extra, str(src), str(out))
    return list(iter_lines(out)), json.loads(report.read_text()), result


def test_a_long_conversation_becomes_windows_that_each_fit(tmp_path, model_tokenizer):
    """Six rounds over 512 tokens: windows of whole rounds, in order, nothing lost, each a
    valid example on its own (the task line first), each kept by OpenNMT-py at seq_length 512
    while the whole conversation is not; each window as long as it can be."""
    conv = rounds(1, 6, 90)
    line = prompt.to_line(prompt.conversation(conv))
    lengths = split_long.Lengths(tokenizer.load(model_tokenizer), answer_marks=False)
    assert lengths.of_texts([prompt.from_line(line)])[0] > 512
    windows, report, _ = split(tmp_path, model_tokenizer, [line], 512)
    assert len(windows) >= 2 and report["split"] == 1 and report["windows"] == len(windows)
    assert report["kept"] == report["dropped"] == report["dropped_rounds"] == 0
    back = [split_long.rounds_of(prompt.from_line(w)) for w in windows]
    assert [r for window in back for r in window] == conv  # every round once, in order
    for window, its_rounds in zip(windows, back, strict=True):
        assert window.startswith(TASK_LINE)
        assert window == prompt.to_line(prompt.conversation(its_rounds))
    assert onmt_keeps(model_tokenizer, 512, windows) == [True] * len(windows)
    assert onmt_keeps(model_tokenizer, 512, [line]) == [False]
    for window, following in zip(back, back[1:], strict=False):  # greedy: the next round would not fit
        assert lengths.of_rounds(window + following[:1]) > 512


def test_lines_that_fit_are_copied_byte_for_byte(tmp_path, small_tokenizer):
    lines = [prompt.to_line(prompt.conversation(rounds(s, 2, 10))) for s in range(5)]
    lines.append(prompt.to_line(prompt.alpaca("Sum.", "1 2", "3")) + "  trailing\tspace\r")
    out, report, _ = split(tmp_path, small_tokenizer, lines, 512)
    assert out == lines and report["kept"] == 6 and report["split"] == 0


def test_a_round_too_long_alone_is_dropped_and_counted(tmp_path, small_tokenizer):
    conv = rounds(2, 5, 12)
    conv[2] = (conv[2][0], sentence(random.Random(3), 400))  # far over 256 on its own
    line = prompt.to_line(prompt.conversation(conv))
    windows, report, result = split(tmp_path, small_tokenizer, [line], 256)
    back = [split_long.rounds_of(prompt.from_line(w)) for w in windows]
    kept_rounds = [r for window in back for r in window]
    assert kept_rounds == conv[:2] + conv[3:]
    # no window joins the rounds before the gap to those after it
    assert all(set(window) <= set(conv[:2]) or set(window) <= set(conv[3:]) for window in back)
    assert report["dropped_rounds"] == 1 and report["dropped"] == 0
    assert report["dropped_by_reason"] == {split_long.ROUND_ALONE: 1}
    assert report["dropped_round_tokens"] > 256
    assert "1 rounds dropped" in result.stdout


def test_examples_that_cannot_be_split_are_dropped_with_their_reason(tmp_path, small_tokenizer):
    long = sentence(random.Random(4), 400)
    lines = [prompt.to_line(prompt.alpaca("Repeat.", long, "ok")),  # Alpaca's layout with an input
             prompt.to_line(prompt.conversation([("Say it.", long)])),  # one round
             prompt.to_line(prompt.conversation([("a", long), ("b", long)])),  # no round fits
             prompt.to_line(prompt.conversation([("a", "b"), ("c", long)]).replace(
                 prompt.TASK, "Another task line.")),  # two rounds, another layout
             prompt.to_line(prompt.conversation([("short", "fine")]))]
    out, report, _ = split(tmp_path, small_tokenizer, lines, 128)
    assert out == lines[-1:]
    assert report["dropped"] == 4 and report["dropped_by_reason"] == {
        split_long.ONE_ROUND: 2, split_long.EVERY_ROUND: 1, split_long.NOT_A_CONVERSATION: 1}
    assert report["training_examples"] == 1 and report["examples"] == 5


def test_a_corpus_where_nothing_fits_is_an_error(tmp_path, small_tokenizer):
    src = tmp_path / "in.txt"
    src.write_text(prompt.to_line(prompt.conversation([("q", sentence(random.Random(5), 300))])) + "\n")
    result = run_script("split_long.py", "--tokenizer_model", str(small_tokenizer), "--seq_length",
                        "64", str(src), str(tmp_path / "out.txt"), check=False)
    assert result.returncode != 0
    assert f"{src}: no example fits seq_length 64" in result.stderr
    assert split_long.ONE_ROUND in result.stderr
    assert not (tmp_path / "out.txt").exists()


def exactly(tokenizer_model, length: int, first: str = "law") -> str | None:
    """A single-round line `length` tokens long (as filtertoolong counts: <s> + pieces + </s>)
    whose answer starts with `first`, or None."""
    lengths = split_long.Lengths(tokenizer.load(tokenizer_model), answer_marks=False)
    for n in range(1, 200):
        for end in ("", ".", "!", " x"):
            text = prompt.conversation([("Repeat.", " ".join([first] + ["law"] * n) + end)])
            if lengths.of_texts([text])[0] == length:
                return prompt.to_line(text)
    return None


def test_length_is_what_filtertoolong_counts(tmp_path, model_tokenizer):
    """A line of exactly seq_length tokens is kept by OpenNMT-py, one more is dropped, and
    split_long keeps and drops the same."""
    at, over = exactly(model_tokenizer, 200), exactly(model_tokenizer, 201)
    assert onmt_keeps(model_tokenizer, 200, [at, over]) == [True, False]
    out, report, _ = split(tmp_path, model_tokenizer, [at, over], 200)
    assert out == [at] and report["dropped"] == 1


FIRST_WORDS = ["law", "the", "Sure", "x", "zq", "12", "(a)", "Here's", "```python", "qwzx"]


def test_room_for_the_answer_mark(tmp_path, model_tokenizer):
    """With answer_loss_only, OpenNMT-py's mark transform makes an example longer: lines that
    fit without it are dropped with it. split_long, told about answer_loss_only, keeps only
    lines that OpenNMT-py then keeps, the tightest (MARK_TOKENS under seq_length) included."""
    seq = 200
    at = [line for w in FIRST_WORDS if (line := exactly(model_tokenizer, seq, w))]
    edge = [line for w in FIRST_WORDS
            if (line := exactly(model_tokenizer, seq - split_long.MARK_TOKENS, w))]
    assert len(at) >= 5 and len(edge) >= 5
    assert all(onmt_keeps(model_tokenizer, seq, at))
    assert not all(onmt_keeps(model_tokenizer, seq, at, mark=True))  # the mark takes room
    out, report, _ = split(tmp_path, model_tokenizer, at + edge, seq, "--answer_loss_only")
    assert out == edge and report["dropped"] == len(at)
    assert all(onmt_keeps(model_tokenizer, seq, out, mark=True))


def test_rounds_are_read_back_from_the_layout():
    conv = [("q1\n\n### Response:\nnot an answer", "a1"), ("q2", "a2\n\n### Instruction:\nx")]
    text = prompt.conversation(conv)
    back = split_long.rounds_of(text)
    assert prompt.conversation(back) == text  # what is cut is exactly what was there
    assert split_long.rounds_of(prompt.conversation([("q", "a")])) == [("q", "a")]
    assert split_long.rounds_of(prompt.alpaca("Sum.", "1 2", "3")) is None
    assert split_long.rounds_of("Hello") is None


def test_a_missing_corpus_or_an_output_of_another_kind_is_named(tmp_path, small_tokenizer):
    missing = tmp_path / "missing.txt"
    result = run_script("split_long.py", "--tokenizer_model", str(small_tokenizer), "--seq_length",
                        "64", str(missing), str(tmp_path / "out.txt"), check=False)
    assert result.returncode != 0 and f"{missing}: no such file" in result.stderr
    (tmp_path / "in.txt").write_text(prompt.to_line(prompt.conversation([("q", "a")])) + "\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("my notes")
    result = run_script("split_long.py", "--tokenizer_model", str(small_tokenizer), "--seq_length",
                        "64", str(tmp_path / "in.txt"), str(tmp_path / "out"), check=False)
    assert result.returncode != 0 and f"{tmp_path / 'out'}: is a directory" in result.stderr
    assert (tmp_path / "out" / "precious.txt").read_text() == "my notes"


def test_conversations_get_no_room_for_a_mark(model_tokenizer):
    """OpenNMT-py's mark goes into single-round examples only; a conversation's loss mask adds
    no token (vicuna.loss_mask): with answer_loss_only its length is the same, and OpenNMT-py
    with the mark transform keeps a conversation exactly as long as seq_length."""
    sp = tokenizer.load(model_tokenizer)
    marked, plain = split_long.Lengths(sp, True), split_long.Lengths(sp, False)
    conv, one = prompt.conversation(rounds(3, 3, 8)), prompt.conversation(rounds(3, 1, 8))
    assert marked.of_texts([conv]) == plain.of_texts([conv])
    assert marked.of_texts([one])[0] == plain.of_texts([one])[0] + split_long.MARK_TOKENS
    length = plain.of_texts([conv])[0]
    assert onmt_keeps(model_tokenizer, length, [prompt.to_line(conv)], mark=True) == [True]
    assert onmt_keeps(model_tokenizer, length - 1, [prompt.to_line(conv)], mark=True) == [False]
