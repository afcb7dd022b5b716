"""The evaluation's logic, without the workflow (vicuna.evaluation.evaluate): held-out losses one model
at a time, the base's greedy answers with the workflow's options, scores and the table."""

from __future__ import annotations

import gc
import math
import weakref
from pathlib import Path

import pytest
import yaml

from vicuna.evaluation import evaluate
from vicuna.serve.engines import Answer


def test_read_lines_names_a_missing_or_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'no.txt'}: no such references"):
        evaluate.read_lines(tmp_path / "no.txt", "references")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty prompts file, nothing to score"):
        evaluate.read_lines(tmp_path / "empty.txt", "prompts")
    (tmp_path / "two.txt").write_text("a\u2028b\nc\n", encoding="utf-8")
    assert evaluate.read_lines(tmp_path / "two.txt", "x") == ["a\u2028b", "c"]


def test_heldout_losses_hold_one_model_at_a_time(tiny_meta):
    lines = ["Below is a task.｟newline｠Answer it.", "cat dog"]
    alive: list[weakref.ref] = []

    def load(path, tokenizer_model, device, precision, mode):
        gc.collect()
        assert all(ref() is None for ref in alive), "the previous model is still in memory"
        engine = evaluate.load_scorer(path, tokenizer_model, device, precision)
        engine.logprobs([[1, 5, 6]])  # its model is built
        alive.append(weakref.ref(engine._model()))
        return engine

    models = {"base": tiny_meta["onmt"], "finetuned": tiny_meta["onmt"]}
    result = evaluate.heldout_losses(models, {"valid": lines}, str(tiny_meta["tokenizer"]),
                                     "cpu", "fp32", load=load)
    assert result["base"] == result["finetuned"]
    assert set(result["base"]) == {"valid_loss", "valid_perplexity"}
    assert result["base"]["valid_perplexity"] == pytest.approx(
        math.exp(result["base"]["valid_loss"]), rel=1e-3)
    assert math.log(320) / 2 < result["base"]["valid_loss"]  # a random model: no better than that


def test_greedy_answers_run_the_py_options_on_another_checkpoint(tmp_path):
    options = tmp_path / "translate_opts_py.yaml"
    options.write_text(yaml.safe_dump({"model": "merged.pt", "max_length": 7, "seed": 1}))
    seen = {}

    def run(mode, options_file, prompts):
        seen.update(mode=mode, opts=yaml.safe_load(Path(options_file).read_text()), file=options_file)
        return [Answer(f"answer to {p}", 0.0, 1) for p in prompts], 0.1

    answers = evaluate.greedy_answers(Path("base.pt"), options, ["a", "b"], run=run)
    assert answers == ["answer to a", "answer to b"]
    assert seen["mode"] == "py" and seen["opts"] == {"model": "base.pt", "max_length": 7, "seed": 1}
    assert not Path(seen["file"]).exists()  # the temporary options file is gone


def test_scores_agreement_and_table():
    refs = ["cat", "dog"]
    answers = ["cat｟newline｠｟newline｠### Instruction:｟newline｠more", "dog"]
    assert evaluate.answer_scores(answers, refs) == {"exact_match": 1.0, "exact_match_eos": 0.5}
    assert evaluate.agreement(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(0.6667)
    with pytest.raises(ValueError, match="2 py predictions but 1 ct2"):
        evaluate.agreement(["a", "b"], ["a"])
    agree = evaluate.agreements({"py": ["a", "b"], "ct2": ["a", "x"], "gguf": ["a", "b"]})
    assert agree == {"py_ct2_agreement": 0.5, "py_gguf_agreement": 1.0, "ct2_gguf_agreement": 0.5}
    with pytest.raises(ValueError, match="2 py predictions but 1 gguf"):
        evaluate.agreements({"py": ["a", "b"], "ct2": ["a", "x"], "gguf": ["a"]})
    result = {"base": {"exact_match": 0.0, "valid_loss": 2.0},
              "finetuned": {"exact_match": 1.0, "valid_loss": 0.5}, **agree}
    rows = evaluate.table_rows(result)
    assert rows == ["metric\tbase\tfinetuned", "exact_match\t0.0\t1.0", "valid_loss\t2.0\t0.5",
                    "py_ct2_agreement\t\t0.5", "py_gguf_agreement\t\t1.0",
                    "ct2_gguf_agreement\t\t0.5"]
    html = evaluate.html_table(rows)
    assert html.startswith("<table id='eval'><tr><th>metric</th>") and html.count("<tr>") == 6


def test_a_streamed_model_equals_the_plain_one_and_empties_its_checkpoint(tiny_meta):
    """evaluate.load_scorer's model is built on the meta device and takes each tensor out of the
    checkpoint as it goes in: the same logits, and no second copy left behind."""
    import torch

    from vicuna.weights import checkpoint

    plain = checkpoint.build_model(checkpoint.load(tiny_meta["onmt"]))
    source = checkpoint.load(tiny_meta["onmt"])
    streamed = checkpoint.build_model(source, consume=True)
    assert source["model"] == {} and source["generator"] is None
    assert not any(p.is_meta for p in streamed.parameters())
    tokens = torch.randint(4, 300, (2, 30))  # from 4: id 3 is OpenNMT-py's pad
    assert torch.equal(checkpoint.logits(plain, tokens), checkpoint.logits(streamed, tokens))


def test_two_models_of_one_checkpoint_share_no_weights(tiny_meta):
    """Not consumed, the checkpoint's tensors are copied: a model changed in place (LoRA layers
    merge into their weights in eval mode) leaves the other one alone."""
    from vicuna.weights import checkpoint

    source = checkpoint.load(tiny_meta["onmt"])
    one, two = checkpoint.build_model(source), checkpoint.build_model(source)
    for p in one.parameters():
        p.data.add_(1.0)
    assert all((a != b).all() for a, b in zip(one.parameters(), two.parameters(), strict=True))
    assert not any(p.data_ptr() == t.data_ptr() for p in two.parameters()
                   for t in source["model"].values())


def test_evaluation_compares_every_mode_given_and_needs_py(tmp_path):
    """Without references no model is loaded: the agreement of each pair of modes' files."""
    files = {}
    for mode, lines in {"py": "a\nb\nc\n", "ct2": "a\nx\nc\n", "gguf": "a\nb\nc\n"}.items():
        files[mode] = tmp_path / f"predictions_{mode}.txt"
        files[mode].write_text(lines)
    missing = tmp_path / "none"
    result = evaluate.evaluation(files, base=missing, options_py=missing,
                                 prompts=files["py"])
    assert result["py_gguf_agreement"] == 1.0 and result["ct2_gguf_agreement"] == 0.6667
    with pytest.raises(ValueError, match="the py predictions are needed"):
        evaluate.evaluation({"ct2": files["ct2"]}, base=missing, options_py=missing,
                            prompts=files["py"])
    files["gguf"].write_text("a\n")
    with pytest.raises(ValueError, match=f"{files['gguf']} 1$"):
        evaluate.evaluation(files, base=missing, options_py=missing, prompts=files["py"])
