"""data.split_long through Snakemake, on a copy of the tiny default's run: a shorter
train.seq_length (64 tokens, under most ShareGPT conversations) and a third training corpus,
a messy ShareGPT HTML dump (leading gpt turns, unanswered human turns, system turns, the page's
artefacts, a record that does not alternate, six rounds each). Only the data and training
steps rerun; the training reads the windows, and OpenNMT-py's own filter keeps every one; the
data report counts what was split, dropped and repaired."""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter

import pytest
import yaml
from helpers import REPO, edited_config, snakemake

from vicuna import prompt
from vicuna.data import flatten, split_long
from vicuna.files import iter_lines, write_json
from vicuna.tiny import synthetic

SEQ_LENGTH = 64
STEPS = 10
TRAINED = ("alpaca_clean", "sharegpt", "dump")


def html(value: str) -> str:
    return ('<div class="markdown prose w-full break-words"><p>'
            + "</p><p>".join(value.split("\n")) + "</p></div>")


def dump_records(n: int = 60) -> list[dict]:
    """ShareGPT records as the HTML dumps hold them, six rounds each, from the tiny default's
    own tasks; every third one opens with a gpt turn, every fourth ends on an unanswered human
    turn, every fifth has a system turn; the last one does not alternate."""
    convs = synthetic.generate(seed=5, n_alpaca=1, n_sharegpt=3 * n, n_heldout=1, n_pretrain=1)["sharegpt"]
    records = []
    for i in range(n):
        turns = [t for c in convs[3 * i:3 * i + 3] for t in c["conversations"]][:12]
        turns = [{"from": t["from"], "value": f"1 / 1{t['value']}" if t["from"] == "human"
                  else html(t["value"])} for t in turns]
        if i % 3 == 0:
            turns.insert(0, {"from": "gpt", "value": html("Hello! How can I help?")})
        if i % 4 == 0:
            turns.append({"from": "human", "value": "Thanks!"})
        if i % 5 == 0:
            turns.insert(0, {"from": "system", "value": "You are a helpful assistant."})
        records.append({"id": f"dump_{i}", "conversations": turns})
    records[-1]["conversations"].insert(3, {"from": "chatgpt", "value": "again"})
    return records


def planned(workdir, configfile, *targets) -> Counter:
    out = snakemake(workdir, "-n", "--", *targets, configfile=configfile).stdout
    return Counter(re.findall(r"^(?:local)?rule (\w+):", out, re.M))


@pytest.fixture(scope="module")
def split_run(tiny_run, tmp_path_factory):
    work = tmp_path_factory.mktemp("split") / "repo"
    shutil.copytree(tiny_run, work, symlinks=True)  # mtimes kept: the run stays up to date
    write_json(work / "dump.json", dump_records())

    def edit(c):
        c["data"].update(split_long=True, on_error="skip", n_samples=100_000)
        c["data"]["corpora"]["dump"] = {"json": "dump.json", "format": "sharegpt_html", "weight": 2}
        c["train"].update(seq_length=SEQ_LENGTH, train_steps=STEPS, save_checkpoint_steps=STEPS,
                          valid_steps=STEPS)

    config = edited_config(work.parent, edit)
    targets = ["runs/llama-tiny/dataAI/stats.tsv", "runs/llama-tiny/finetuned_llama-tiny/samples",
               f"runs/llama-tiny/finetuned_llama-tiny/llama-tiny-vicuna-onmt_step_{STEPS}.pt"]
    plan = planned(work, config, *targets)
    snakemake(work, "--profile", "profiles/local", "--", *targets, configfile=config)
    with open(work / "runs/llama-tiny/dataAI" / "stats.tsv", encoding="utf-8") as f:
        stats = {row["corpus"]: row for row in csv.DictReader(f, delimiter="\t")}
    return work, plan, stats


def test_only_the_data_and_training_steps_rerun(split_run):
    _, plan, _ = split_run
    assert plan == {"flatten_dataset": 5, "split_long": 3, "data_report": 1, "finetune_config": 1,
                    "finetune_samples": 1, "finetune": 1}


def test_the_training_reads_the_windows_and_opennmt_keeps_every_one(split_run):
    work, _, stats = split_run
    cfg = yaml.safe_load((work / "runs/llama-tiny/replicate_vicuna.yaml").read_text())
    assert {name: cfg["data"][name]["path_src"] for name in TRAINED} == {
        name: f"runs/llama-tiny/dataAI/{name}.split.txt" for name in TRAINED}
    assert cfg["data"]["valid"]["path_src"] == "runs/llama-tiny/dataAI/valid.txt"  # scored whole, never split
    samples = work / "runs/llama-tiny/finetuned_llama-tiny" / "samples" / "sample"
    for name in TRAINED:
        lines = list(iter_lines(work / "runs/llama-tiny/dataAI" / f"{name}.split.txt"))
        row = stats[name]
        assert int(row["training_examples"]) == int(row["kept"]) + int(row["windows"]) == len(lines)
        # the samples dump holds what OpenNMT-py's transforms (filtertoolong too) let through
        assert sum(1 for _ in iter_lines(samples / f"{name}.sample.src")) == len(lines), name
        if name != "alpaca_clean":  # conversations: each window opens with the task line
            assert all(line.startswith(prompt.to_line(split_long.OPENING)) for line in lines)
    assert (work / f"runs/llama-tiny/finetuned_llama-tiny/llama-tiny-vicuna-onmt_step_{STEPS}.pt").is_file()


def test_the_report_counts_what_was_split_dropped_and_repaired(split_run):
    _, _, stats = split_run
    share = stats["sharegpt"]
    assert int(share[f"over_{SEQ_LENGTH}"]) == int(share["split"]) + int(share["dropped"]) > 0
    assert int(share["windows"]) > int(share["split"])
    alpaca = stats["alpaca_clean"]  # single rounds cannot be split: those too long are dropped
    assert int(alpaca["split"]) == 0 and int(alpaca["dropped"]) == int(alpaca[f"over_{SEQ_LENGTH}"]) > 0
    assert alpaca["dropped_by_reason"] == f"{alpaca['dropped']} {split_long.ONE_ROUND}"
    dump = stats["dump"]
    assert int(dump["records"]) == 60 and int(dump["examples"]) == 59 and int(dump["skipped"]) == 1
    assert dump["skipped_by_reason"] == "1 roles do not alternate"
    for repair, n in ((flatten.LEADING, 20), (flatten.TRAILING, 15), (flatten.SYSTEM_TURN, 12)):
        assert f"{n} {repair}" in dump["repaired"]
    assert int(dump["split"]) == 59 and int(dump["windows"]) >= 3 * 59
    assert stats["valid"]["use"] == "scored whole" and stats["valid"]["dropped"] == "0"


def test_without_split_long_the_report_shows_what_filtertoolong_drops(tiny_run, tmp_path):
    """The same seq_length without split_long: the report counts every long example as
    dropped (OpenNMT-py's filtertoolong drops it whole)."""
    work = tmp_path / "repo"
    shutil.copytree(tiny_run, work, symlinks=True)
    config = edited_config(tmp_path, lambda c: c["train"].update(seq_length=SEQ_LENGTH))
    assert planned(work, config, "runs/llama-tiny/dataAI/stats.tsv") == {"data_report": 1}
    snakemake(work, "--profile", "profiles/local", "--", "runs/llama-tiny/dataAI/stats.tsv",
              configfile=config)
    with open(work / "runs/llama-tiny/dataAI" / "stats.tsv", encoding="utf-8") as f:
        share = next(row for row in csv.DictReader(f, delimiter="\t") if row["corpus"] == "sharegpt")
    assert int(share["split"]) == 0 and int(share["dropped"]) == int(share[f"over_{SEQ_LENGTH}"]) > 0
    assert share["dropped_by_reason"] == f"{share['dropped']} {split_long.FILTERED}"
    assert int(share["training_examples"]) == int(share["kept"])


def test_the_default_config_plans_no_split(tmp_path):
    """split_long absent (the default): no split_long job, the training reads the corpora."""
    from conftest import clone

    work = clone(tmp_path / "repo")
    out = snakemake(work, "-n", "all").stdout
    assert "rule split_long" not in out and "rule flatten_dataset" in out
    assert "split_long" not in (REPO / "config.yaml").read_text()
