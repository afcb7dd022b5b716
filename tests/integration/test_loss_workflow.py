"""train.answer_loss_only through Snakemake, on a copy of the tiny default's run with Vicuna's
recipe (configs/vicuna-recipe.yaml: the loss on the answers, long conversations split) layered
on it and shrunk to a few steps: the training runs and validates with a real loss; the samples
bracket every answer of each conversation; the held-out losses keep their keys and add the loss
on the answers."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from helpers import REPO, edited_config, snakemake

from vicuna import loss_mask
from vicuna.files import iter_lines

STEPS = 10
SAMPLES = "runs/llama-tiny/finetuned_llama-tiny/samples/sample"


@pytest.fixture(scope="module")
def answers_run(tiny_run, tmp_path_factory):
    work = tmp_path_factory.mktemp("answers") / "repo"
    shutil.copytree(tiny_run, work, symlinks=True)  # mtimes kept: the run stays up to date
    recipe = yaml.safe_load((REPO / "configs" / "vicuna-recipe.yaml").read_text())

    def edit(c):
        c["data"].update(recipe["data"])
        c["train"].update(recipe["train"], seq_length=160, train_steps=STEPS,
                          save_checkpoint_steps=STEPS, valid_steps=STEPS)

    config = edited_config(work.parent, edit)
    # the recipe, shrunk: one file on top of the tiny default, as a user layers it
    snakemake(work, "--profile", "profiles/local", "--", "runs/llama-tiny/outputs/heldout_loss.json",
              "runs/llama-tiny/finetuned_llama-tiny/samples", configfile=config)
    return work


def test_the_training_runs_and_validates_on_the_answers(answers_run):
    log = (answers_run / "runs/llama-tiny/logs" / "finetune.log").read_text(encoding="utf-8")
    ppl = [float(p) for p in re.findall(r"Validation perplexity: ([\d.]+|nan|inf)", log)]
    assert ppl and all(1.0 < p < 1e6 for p in ppl), log[-2000:]
    cfg = yaml.safe_load((answers_run / "runs/llama-tiny/replicate_vicuna.yaml").read_text())
    assert cfg["zero_out_prompt_loss"] is True
    assert cfg["response_patterns"] == ["### Response:｟newline｠"]


def test_the_samples_bracket_every_answer(answers_run):
    samples = answers_run / SAMPLES
    multi = list(iter_lines(samples / "sharegpt.sample.src.loss"))
    dumped = list(iter_lines(samples / "sharegpt.sample.src"))
    assert multi and len(multi) == len(dumped)
    for shown, line in zip(multi, dumped, strict=True):
        text = "".join(line.split(" ")).replace("\u2581", " ").replace("<0x0A>", "\n")
        assert shown.replace("[", "").replace("]", "") == line + " </s>"  # the same pieces
        # one bracketed run per answer (with what ends it), the last one through </s>
        assert shown.count("[") == text.count(loss_mask.ANSWER_START) >= 1, shown
        assert shown.endswith("</s>]")
    assert any(shown.count("[") >= 2 for shown in multi)  # conversations of several rounds
    alpaca = list(iter_lines(samples / "alpaca_clean.sample.src.loss"))
    assert alpaca and all(re.search(r"<0x0A> <blank> \[.*</s>\]$", s) and s.count("[") == 1
                          for s in alpaca)


def test_the_heldout_losses_add_the_loss_on_the_answers(answers_run):
    result = json.loads((answers_run / "runs/llama-tiny/outputs" / "heldout_loss.json").read_text())
    for model in ("base", "finetuned"):
        keys = set(result[model])
        assert {"valid_loss", "valid_perplexity", "sharegpt_loss", "sharegpt_perplexity"} <= keys
        assert {"valid_answer_loss", "sharegpt_answer_loss", "sharegpt_answer_perplexity"} <= keys
        assert result[model]["sharegpt_answer_loss"] != result[model]["sharegpt_loss"]
