"""MMLU's data faults through the workflow's `mmlu` rule, as a user meets them: a config whose
`benchmarks.mmlu` names a directory in Hendrycks' layout with a subject's dev file missing, or
more shots than the dev files hold (tests/unit/test_mmlu.py checks scripts/mmlu.py itself)."""

from __future__ import annotations

import json
import shutil

from helpers import clone, edited_config, snakemake

MMLU_JSON = "runs/llama-tiny/outputs/mmlu.json"


def copy_of_the_run(tiny_run, work):
    shutil.copytree(tiny_run, work, symlinks=True)  # keeps mtimes: upstream stays up to date
    clone(work)  # this tree's code, should tiny_run be an older run (VICUNA_TINY_RUN)
    return work


def test_a_subject_without_its_dev_file_fails_the_rule_naming_the_file(tiny_run, tmp_path):
    work = copy_of_the_run(tiny_run, tmp_path / "run")
    data = work / "my-mmlu"
    shutil.copytree(work / "synthetic" / "mmlu", data)
    subject = sorted((data / "dev").glob("*_dev.csv"))[0]
    subject.unlink()
    config = edited_config(tmp_path, lambda c: c["benchmarks"]["mmlu"].update(data="my-mmlu"))
    result = snakemake(work, "--profile", "profiles/local", "--", MMLU_JSON, configfile=config,
                       check=False)
    assert result.returncode == 1
    console = result.stdout + result.stderr
    line = next(line for line in console.splitlines() if line.startswith("  mmlu: "))
    assert f"my-mmlu/dev/{subject.name}: no such file" in line, console[-3000:]
    assert "runs/llama-tiny/logs/mmlu.log" in console
    assert not (work / MMLU_JSON).exists()  # no partial result

    # naming the subjects to score: the others are not needed
    others = sorted(p.name.removesuffix("_dev.csv") for p in (data / "dev").glob("*_dev.csv"))
    config = edited_config(tmp_path, lambda c: c["benchmarks"]["mmlu"].update(
        data="my-mmlu", subjects=others))
    snakemake(work, "--profile", "profiles/local", "--", MMLU_JSON, configfile=config)
    scores = json.loads((work / MMLU_JSON).read_text())
    assert sorted(scores["base"]["loglik"]["subjects"]) == others


def test_more_shots_than_the_dev_files_hold_is_a_warning_and_recorded(tiny_run, tmp_path):
    work = copy_of_the_run(tiny_run, tmp_path / "run")
    config = edited_config(tmp_path, lambda c: c["benchmarks"]["mmlu"].update(shots=9))
    snakemake(work, "--profile", "profiles/local", "--", MMLU_JSON, configfile=config)
    log = (work / "runs/llama-tiny/logs/mmlu.log").read_text()
    scores = json.loads((work / MMLU_JSON).read_text())
    assert scores["shots"] == 9
    assert set(scores["shots_used"].values()) == {5}  # synthetic/mmlu: 5 dev rows a subject
    for subject in scores["shots_used"]:
        assert f"warning: --shots 9, but dev/{subject}_dev.csv has 5 rows" in log
