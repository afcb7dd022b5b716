"""configs/vicuna-recipe.yaml: Vicuna's recipe as one small override of the tutorial's run,
layered on configs/llama7b-vicuna.yaml as the README says; the layered config validates and
plans (a dry run on a placeholder 7B base of the real size, as tests/test_plan.py plans the
7B run), with the training corpora read through split_long."""

from __future__ import annotations

import re
import shlex

import yaml
from helpers import REPO, clone, snakemake

from vicuna import random_base

RECIPE = REPO / "configs" / "vicuna-recipe.yaml"
COMMAND = ("snakemake all --profile profiles/slurm --configfile configs/llama7b-vicuna.yaml "
           "configs/vicuna-recipe.yaml")


def test_the_recipe_changes_only_what_vicuna_did_differently():
    assert yaml.safe_load(RECIPE.read_text()) == {"data": {"split_long": True},
                                                  "train": {"answer_loss_only": True}}
    tutorial = yaml.safe_load((REPO / "configs" / "llama7b-vicuna.yaml").read_text())
    assert tutorial["train"]["answer_loss_only"] is False and "split_long" not in tutorial["data"]
    assert COMMAND in RECIPE.read_text() and COMMAND in (REPO / "README.md").read_text()


def test_the_layered_config_validates_and_plans(tmp_path):
    work = clone(tmp_path / "repo")
    random_base.write_placeholder(work / "llama" / "7B", "7B")
    (work / "llama" / "tokenizer.model").write_bytes(b"")  # read by no job of a dry run
    out = snakemake(work, *shlex.split(COMMAND)[1:], "--dry-run").stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):", out, re.M)
    assert sorted(w for w in re.findall(r"wildcards: corpus=(\w+)", out)) == [
        "alpaca_clean", "alpaca_clean", "sharegpt", "sharegpt"]  # downloaded, then split
    assert jobs.count("split_long") == 2 and jobs.count("download_dataset") == 2
    assert {"data_report", "finetune_config", "finetune", "simple_inference"} <= set(jobs)
    assert "dataAI/sharegpt.split.txt" in out and "dataAI/alpaca_clean.split.txt" in out
