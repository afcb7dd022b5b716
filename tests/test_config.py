"""A missing, malformed or unknown config key fails before any job starts, naming the key."""

from __future__ import annotations

import shutil

import pytest
from helpers import REPO, clone, edited_config, snakemake


def dry_run(tmp_path, configfile):
    """`snakemake -n all` from the root of a fresh clone, with `configfile` in place."""
    workdir = clone(tmp_path / "work")
    shutil.copy(configfile, workdir / "config.yaml")
    before = sorted(p.name for p in workdir.iterdir())
    result = snakemake(workdir, "-n", "all", check=False)
    return workdir, before, result


CASES = {
    "missing": (lambda c: c["train"]["lora"].pop("rank"), "'rank' is a required property"),
    "malformed": (lambda c: c["train"].update(train_steps="many"), "'many' is not of type 'integer'"),
    "out of range": (lambda c: c["inference"].update(random_sampling_topp=1.5), "1.5 is greater than"),
    "unknown (typo)": (lambda c: c["train"].update(learning_rat=0.1), "'learning_rat' was unexpected"),
    "bad choice": (lambda c: c["release"].update(quantization="int4"), "'int4' is not one of"),
    "held-out corpus weighted": (lambda c: c["data"]["heldout"]["sharegpt"].update(weight=1),
                                 "'weight' was unexpected"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_config_fails_at_parse_time_naming_the_key(tmp_path, case):
    edit, message = CASES[case]
    workdir, before, result = dry_run(tmp_path, edited_config(tmp_path, edit))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Building DAG" not in result.stdout + result.stderr  # no job was even planned
    assert sorted(p.name for p in workdir.iterdir() if p.name != ".snakemake") == before


def test_cross_key_check_names_both_keys(tmp_path):
    def edit(c):
        c["train"]["quantization"]["type"] = ""
    _, _, result = dry_run(tmp_path, edited_config(tmp_path, edit))
    assert result.returncode != 0
    assert "train.quantization.type must be set" in result.stdout + result.stderr


def test_default_config_plans_the_whole_graph(tmp_path):
    _, _, result = dry_run(tmp_path, REPO / "config.yaml")
    assert result.returncode == 0, result.stderr
    for rule in ["synthetic_data", "pretrain_base", "convert_llama", "extract_vocabulary",
                 "finetune_config", "finetune", "merge_lora", "release_ct2", "simple_inference"]:
        assert rule in result.stdout
