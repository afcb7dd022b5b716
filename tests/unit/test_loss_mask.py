"""The loss on every answer (train.answer_loss_only): vicuna.loss_mask on made-up pieces, then
on the real batches OpenNMT-py builds (its iterators and transforms, as onmt_train builds
them), through vicuna.onmt_fixes.mask_every_answer: a 3-round conversation token by token,
single-round examples exactly as OpenNMT-py's own mask has them, in training and validation."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from helpers import run_script

from vicuna import loss_mask, prompt
from vicuna.train.finetune_config import RESPONSE_PATTERN

ROUNDS = [("Name a color.", "Red."), ("Another one?", "Blue, or green."),
          ("And a number?", "7")]


def answer_char_spans(rounds) -> tuple[str, list[tuple[int, int]]]:
    """The conversation's text and, built up round by round (not searched for), the characters
    that carry the loss: each answer with the next round's start (prompt.STOP), the last one to
    the end."""
    text = prompt.TASK + prompt.SEP
    spans = []
    for i, (human, gpt) in enumerate(rounds):
        text += prompt.section(prompt.INSTRUCTION, human) + prompt.SEP + prompt.section(prompt.RESPONSE, "")
        start = len(text)
        text += gpt
        if i + 1 < len(rounds):
            spans.append((start, len(text) + len(prompt.STOP)))
            text += prompt.SEP
        else:
            spans.append((start, len(text)))
    assert text == prompt.conversation(rounds)
    return text, spans


# --- The pure functions ------------------------------------------------------------------------

def pieces_mask(pieces: list[str]) -> list[bool]:
    index: dict[str, int] = {}
    ids = [index.setdefault(p, len(index)) for p in pieces]
    surfaces = loss_mask.vocab_bytes(list(index), loss_mask.SPECIALS)
    return loss_mask.answer_mask(ids, surfaces, pad=index.get("<blank>", -1), eos=index["</s>"])


def test_markers_come_from_the_layout():
    assert loss_mask.ANSWER_START == "### Response:\n"
    assert loss_mask.ANSWER_END == prompt.STOP == "\n\n### Instruction:"
    assert RESPONSE_PATTERN == "### Response:｟newline｠" == prompt.to_line(loss_mask.ANSWER_START)


def test_piece_bytes():
    specials = frozenset(loss_mask.SPECIALS)
    assert loss_mask.piece_bytes("\u2581Response", specials) == b" Response"
    assert loss_mask.piece_bytes("<0x0A>", specials) == b"\n"
    assert loss_mask.piece_bytes("<0xE2>", specials) == b"\xe2"
    assert [loss_mask.piece_bytes(p, specials) for p in loss_mask.SPECIALS] == [b""] * 4
    assert loss_mask.piece_bytes("é", specials) == "é".encode()


def test_answer_spans():
    text = b"T\n\n### Instruction:\nh1\n\n### Response:\na1\n\n### Instruction:\nh2\n\n### Response:\na2"
    a1 = text.index(b"a1")
    a2 = text.index(b"a2")
    assert loss_mask.answer_spans(text) == [(a1, a1 + 2 + len(b"\n\n### Instruction:")), (a2, None)]
    assert loss_mask.answer_spans(b"no answer here") == []


def test_every_answer_and_what_ends_it_carries_the_loss():
    # a 2-round conversation in made-up pieces: the markers cut in odd places on purpose
    pieces = ["\u2581T", "<0x0A>", "<0x0A>", "###", "\u2581Instruction:", "<0x0A>", "hi",
              "<0x0A>", "<0x0A>", "###", "\u2581Resp", "onse", ":", "<0x0A>", "hel", "lo",
              "<0x0A>", "<0x0A>", "###", "\u2581Instruction", ":", "<0x0A>", "more",
              "<0x0A>", "<0x0A>", "###", "\u2581Response:", "<0x0A>", "bye", "</s>",
              "<blank>", "<blank>"]  # batch padding after </s>
    mask = pieces_mask(pieces)
    carried = [p for p, on in zip(pieces, mask, strict=True) if on]
    assert carried == ["hel", "lo", "<0x0A>", "<0x0A>", "###", "\u2581Instruction", ":",
                       "bye", "</s>"]
    assert loss_mask.bracketed(pieces, mask).count("[") == 2


def test_a_piece_across_an_answer_boundary_carries_the_loss():
    pieces = ["###", "\u2581Response:", "<0x0A>", "ab", "c<", "</s>"]  # not a real split, bytes only
    assert pieces_mask(pieces) == [False, False, False, True, True, True]


def test_with_the_placeholder_the_mask_is_onmts():
    """A single-round row with OpenNMT-py's placeholder (a pad): everything after it, </s>
    included, as OpenNMT-py's cumulative sum has it; even where the text would say otherwise."""
    pieces = ["x", "###", "\u2581Response:", "<0x0A>", "<blank>", "a", "b", "</s>", "<blank>"]
    assert pieces_mask(pieces) == [False, False, False, False, False, True, True, True, False]
    assert loss_mask.after_placeholder([5, 3, 6, 3, 7], pad=3) == [False, False, True, False, True]


def test_no_answer_no_loss():
    assert pieces_mask(["\u2581just", "\u2581text", "</s>"]) == [False, False, False]


def test_bracketed():
    assert loss_mask.bracketed(list("abcde"), [False, True, True, False, True]) == "a [b c] d [e]"
    assert loss_mask.bracketed(["x"], [True]) == "[x]"


def test_shown_a_dumped_sample_line():
    line = "\u2581T <0x0A> ### \u2581Response: <0x0A> <blank> \u2581ok"
    assert loss_mask.shown(line) == "\u2581T <0x0A> ### \u2581Response: <0x0A> <blank> [\u2581ok </s>]"


# --- On OpenNMT-py's own batches ----------------------------------------------------------------

TRAIN = {
    "lora": {"layers": ["linear_query"], "rank": 2, "alpha": 4, "dropout": 0.0},
    "quantization": {"layers": [], "type": ""}, "seq_length": 512, "precision": "fp32",
    "optim": "adam", "learning_rate": 1.0e-3, "warmup_steps": 0, "adam_beta2": 0.998,
    "max_grad_norm": 0.0, "batch_size": 4096, "valid_batch_size": 4096, "accum_count": 1,
    "bucket_size": 64, "num_workers": 0, "train_steps": 2, "save_checkpoint_steps": 2,
    "keep_checkpoint": 1, "valid_steps": 2, "report_every": 1, "seed": 1,
    "answer_loss_only": True,
}
SINGLE = {"instruction": "Repeat these words.", "input": "cat dog", "output": "cat dog"}


@pytest.fixture(scope="module")
def finetune(tiny_meta, tmp_path_factory):
    """A finetuning config as the workflow writes it (answer_loss_only), on a 3-round
    ShareGPT corpus and a single-round alpaca one; valid holds both lines."""
    from vicuna.train.finetune_config import finetune_config
    from vicuna.weights.convert import read_shape

    root = tmp_path_factory.mktemp("loss_mask")
    run_script("extract_vocabulary.py", "-model", str(tiny_meta["onmt"]),
               "-out_file", str(root / "vocab.txt"))
    multi = prompt.to_line(prompt.conversation(ROUNDS))
    single = prompt.to_line(prompt.alpaca(**SINGLE))
    for name, line in (("sharegpt", multi), ("alpaca", single)):
        (root / f"{name}.txt").write_text((line + "\n") * 4, encoding="utf-8")
    (root / "valid.txt").write_text(f"{multi}\n{single}\n", encoding="utf-8")
    vocab_size = len((root / "vocab.txt").read_text().splitlines())
    cfg = finetune_config(
        shape=read_shape(tiny_meta["meta"]), vocab_size=vocab_size,
        corpora={n: {"path": str(root / f"{n}.txt"), "weight": 1} for n in ("sharegpt", "alpaca")},
        valid=str(root / "valid.txt"), tokenizer_model=str(tiny_meta["tokenizer"]),
        vocab=str(root / "vocab.txt"), base_checkpoint=str(tiny_meta["onmt"]),
        save_model=str(root / "ft/m"), tensorboard_dir=str(root / "tb"), train=TRAIN)
    (root / "ft.yaml").write_text(yaml.safe_dump(cfg))
    return {"root": root, "config": root / "ft.yaml", "multi": multi, "single": single}


def onmt_batches(config, task):
    """OpenNMT-py's batches of a training config's corpora (task TRAIN or VALID), built the
    way onmt_train builds them, and its vocabularies."""
    from onmt.bin.train import _get_parser
    from onmt.inputters.dynamic_iterator import build_dynamic_dataset_iter
    from onmt.train_single import _init_train
    from onmt.utils.parse import ArgumentParser

    from vicuna import onmt_fixes

    onmt_fixes.allow_checkpoint_pickles()
    opt = _get_parser().parse_args(["-config", str(config)])
    ArgumentParser.validate_train_opts(opt)
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    _, vocabs, transforms_cls = _init_train(opt)
    return build_dynamic_dataset_iter(opt, transforms_cls, vocabs, task=task), vocabs


def loss_compute(vocab):
    import torch
    from onmt.constants import DefaultTokens
    from onmt.utils.loss import LossCompute

    pad = vocab[DefaultTokens.PAD]
    return LossCompute(torch.nn.CrossEntropyLoss(ignore_index=pad, reduction="sum"), None,
                       tgt_shift_index=0, vocab=vocab)


@pytest.mark.parametrize("task", ["train", "valid"])
def test_the_mask_of_a_3_round_example_token_by_token(finetune, tiny_meta, task):
    """The targets of OpenNMT-py's batch rows after mask_every_answer: every token of every
    answer, with the next round's start and the final </s>, keeps its id; every other is the
    pad. The single-round rows come out exactly as OpenNMT-py's own ignore_prompt has them."""
    import torch
    from onmt.constants import CorpusTask, DefaultTokens
    from onmt.utils.loss import LossCompute

    from vicuna import onmt_fixes, tokenizer

    onmt_fixes.mask_every_answer()
    corpus_task = {"train": CorpusTask.TRAIN, "valid": CorpusTask.VALID}[task]
    batches, vocabs = onmt_batches(finetune["config"], corpus_task)
    vocab = vocabs["tgt"]
    pad, eos = vocab[DefaultTokens.PAD], vocab[DefaultTokens.EOS]
    compute = loss_compute(vocab)
    sp = tokenizer.load(tiny_meta["tokenizer"])
    text, spans = answer_char_spans(ROUNDS)
    proto = sp.encode(text, out_type="proto")
    expected_ids = [vocab[p.piece] for p in proto.pieces] + [eos]
    expected = [any(p.begin < b and p.end > a for a, b in spans) for p in proto.pieces] + [True]
    assert 0 < sum(expected) < len(expected) - 10

    seen = {"multi": 0, "single": 0}
    for batch, *_ in batches:
        before = batch["tgt"].clone()
        onmts = LossCompute.ignore_prompt.__wrapped__(  # OpenNMT-py's own, on a copy
            compute, {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()})
        ours = compute.ignore_prompt(batch)
        width = before.size(1)
        for r, n in enumerate(ours["srclen"].tolist()):
            # training batches are right-padded, validation ones left-padded
            real = slice(width - n, width) if task == "valid" else slice(0, n)
            tgt = before[r, real, 0].tolist()  # the row's tokens, then </s>
            got = ours["tgt"][r, real, 0].tolist()
            padding = ours["tgt"][r, :width - n, 0] if task == "valid" else ours["tgt"][r, n:, 0]
            assert padding.eq(pad).all()  # batch padding stays padding
            if pad in tgt:  # OpenNMT-py's placeholder: the single-round alpaca example
                assert got == [t if i > tgt.index(pad) and t != pad else pad for i, t in enumerate(tgt)]
                if task == "train":
                    assert got == onmts["tgt"][r, real, 0].tolist()  # exactly OpenNMT-py's
                elif n < width:  # OpenNMT-py's own counts the left padding: the trap is real
                    assert onmts["tgt"][r, real, 0].tolist() != got
                answer = [vocab.ids_to_tokens[t] for t in tgt[tgt.index(pad) + 1:-1]]
                assert tgt[-1] == eos and sp.decode(answer).strip() == "cat dog"
                seen["single"] += 1
                continue
            assert tgt == expected_ids, "the batch row is not the 3-round example"
            assert got == [t if on else pad for t, on in zip(tgt, expected, strict=True)]
            if task == "train":  # OpenNMT-py's own leaves the conversation no target at all
                assert onmts["tgt"][r, real, 0].eq(pad).all()
            seen["multi"] += 1
        # masking twice (truncated BPTT calls it at each chunk) changes nothing more
        again = compute.ignore_prompt({**ours, "tgt": ours["tgt"].clone()})
        assert torch.equal(again["tgt"], ours["tgt"])
        if (task == "train" and min(seen.values()) >= 2) or task == "valid":
            break
    assert seen["multi"] >= 1 and seen["single"] >= 1, seen
    shown = loss_mask.bracketed([vocab.ids_to_tokens[t] for t in expected_ids], expected)
    assert shown.count("[") == 3 and shown.endswith("</s>]")


def test_samples_show_the_mask_and_training_reports_a_loss_on_conversations(finetune, tmp_path):
    """finetune_samples' dump: each corpus's `.loss` file brackets what carries the loss (the
    three answers of the conversation; the alpaca answer after its placeholder). Training on
    the conversations alone reports a real loss in training and validation (OpenNMT-py's own
    mask leaves them none)."""
    run_script("train.py", "-config", str(finetune["config"]), "-n_sample", "2",
               "-save_data", str(tmp_path / "samples/sample"))
    shown = {f.name.split(".")[0]: f.read_text(encoding="utf-8").splitlines()
             for f in (tmp_path / "samples/sample").glob("*.loss")}
    assert set(shown) == {"sharegpt", "alpaca"}
    multi = shown["sharegpt"][0]
    assert multi.count("[") == 3 and multi.endswith("</s>]"), multi
    carried = [run.replace(" ", "").replace("\u2581", " ").replace("<0x0A>", "\n")
               for run in re.findall(r"\[([^\]]*)\]", multi)]
    assert carried == ["Red." + prompt.STOP, "Blue, or green." + prompt.STOP, "7</s>"]
    assert re.search(r"<blank> \[.*</s>\]$", shown["alpaca"][0]), shown["alpaca"][0]

    cfg = yaml.safe_load(finetune["config"].read_text())
    cfg["data"] = {"sharegpt": cfg["data"]["sharegpt"],
                   "valid": {**cfg["data"]["valid"], "path_src": cfg["data"]["sharegpt"]["path_src"]}}
    cfg["save_model"] = str(tmp_path / "ft/m")
    cfg["tensorboard_log_dir"] = str(tmp_path / "tb")
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump(cfg))
    trained = run_script("train.py", "-config", str(tmp_path / "multi.yaml"), "-no_resume")
    log = trained.stdout + trained.stderr
    train_ppl = re.findall(r"ppl:\s+([\d.]+|nan|inf)", log)
    valid_ppl = re.findall(r"Validation perplexity: ([\d.]+|nan|inf)", log)
    assert train_ppl and valid_ppl, log[-2000:]
    assert all(1.0 < float(p) < 1e6 for p in train_ppl + valid_ppl), (train_ppl, valid_ppl)
    assert json.dumps(cfg)  # the config was valid yaml for OpenNMT-py


def test_the_training_applies_the_mask():
    """scripts/train.py applies every fix (onmt_fixes.apply): the mask is one of them."""
    import subprocess
    import sys

    code = ("from vicuna import onmt_fixes; onmt_fixes.apply()\n"
            "from onmt.utils.loss import LossCompute\n"
            "assert LossCompute.ignore_prompt._vicuna_fixed")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_heldout_losses_add_the_answer_loss_and_keep_the_rest(tiny_meta, finetune):
    """heldout_loss --answer_loss_only: the same <corpus>_loss / _perplexity to the bit, and
    the loss on the answers: a conversation's from the plain sequence and its layout's mask, a
    single round's as the training reads it (OpenNMT-py's placeholder, its pad)."""
    import math

    from vicuna.evaluation import evaluate

    heldout = {"multi": [finetune["multi"]], "single": [finetune["single"]],
               "plain": ["just text, no answer"]}
    models = {"base": tiny_meta["onmt"]}
    args = (models, heldout, str(tiny_meta["tokenizer"]), "cpu", "fp32")
    plain = evaluate.heldout_losses(*args)
    answers = evaluate.heldout_losses(*args, answers_only=True)
    assert {k: v for k, v in answers["base"].items() if "answer" not in k} == plain["base"]
    assert set(answers["base"]) - set(plain["base"]) == {
        "multi_answer_loss", "multi_answer_perplexity", "single_answer_loss",
        "single_answer_perplexity"}  # no answer in "plain": no answer loss

    engine = evaluate.load_scorer(tiny_meta["onmt"], str(tiny_meta["tokenizer"]))
    sp, pad = engine.sp, engine.pad_id()
    text, spans = answer_char_spans(ROUNDS)
    proto = sp.encode(text, out_type="proto")
    ids = [sp.bos_id(), *[p.id for p in proto.pieces], sp.eos_id()]
    mask = [any(p.begin < b and p.end > a for a, b in spans) for p in proto.pieces] + [True]
    logprobs = engine.logprobs([ids])[0]
    want = -math.fsum(lp for lp, on in zip(logprobs, mask, strict=True) if on) / sum(mask)
    assert answers["base"]["multi_answer_loss"] == round(want, 4)
    head, answer = prompt.from_line(finetune["single"]).split(loss_mask.ANSWER_START)
    marked = [sp.bos_id(), *sp.encode(head + loss_mask.ANSWER_START), pad, *sp.encode(answer),
              sp.eos_id()]
    logprobs = engine.logprobs([marked])[0]
    n = len(sp.encode(answer)) + 1
    assert answers["base"]["single_answer_loss"] == round(-math.fsum(logprobs[-n:]) / n, 4)
    engine.close()
