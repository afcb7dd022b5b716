"""Runs apart: each config's artifacts in runs/<run_name>/, the configured inputs checked at
parse time, prompts given as alpaca records, and a run's releases kept for its newest step only.
Planning through Snakemake from a fresh clone; the small pieces in process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from helpers import REPO, clone, edited_config, snakemake

from vicuna import config_check, prompt, run_layout
from vicuna.data import flatten
from vicuna.testing import random_base


def plan(workdir: Path, *args: str) -> tuple[list[str], str]:
    """The rules `snakemake -n` plans (one entry a job), and its output."""
    result = snakemake(workdir, "-n", *args)
    return re.findall(r"^(?:local)?rule (\w+):", result.stdout, re.M), result.stdout


def outputs(text: str) -> list[str]:
    return [path for line in re.findall(r"^    output: (.*)$", text, re.M)
            for path in line.split(", ")]


def test_every_output_of_the_default_lives_in_its_run_folder_but_its_own_sources(tmp_path):
    work = clone(tmp_path / "work")
    jobs, out = plan(work, "all")
    made = outputs(out)
    assert made and "flatten_dataset" in jobs
    sources = [p for p in made if not p.startswith("runs/llama-tiny/")]
    assert sources and all(p.startswith("synthetic/") for p in sources), sources
    logs = re.findall(r"^    log: (.*)$", out, re.M)
    assert logs and all(p.startswith("runs/llama-tiny/logs/") for p in logs)


def test_the_7b_config_and_the_recipe_plan_in_folders_of_their_own(tmp_path):
    work = clone(tmp_path / "work")
    random_base.write_placeholder(work / "llama" / "7B", "7B")
    (work / "llama" / "tokenizer.model").write_bytes(b"")  # read by no job of a dry run
    for configs, run in ((["configs/llama7b-vicuna.yaml"], "runs/llama7B"),
                         (["configs/llama7b-vicuna.yaml", "configs/vicuna-recipe.yaml"],
                          "runs/llama7B-vicuna-recipe")):
        assert run_layout.run_dir(run_layout.merged_config([str(work / c) for c in configs])) == run
        jobs, out = plan(work, "all", "--configfile", *configs)
        assert jobs.count("download_dataset") == 2 and "finetune" in jobs
        assert all(p.startswith(f"{run}/") for p in outputs(out)), outputs(out)


@pytest.mark.parametrize("files, run", [
    (["configs/llama7b-vicuna.yaml", "configs/mistral-7b.yaml"], "runs/mistral-7B"),
    (["configs/llama7b-vicuna.yaml", "configs/mistral-7b.yaml", "configs/vicuna-recipe.yaml"],
     "runs/mistral-7B-vicuna-recipe"),
    (["configs/llama7b-vicuna.yaml", "configs/vicuna-recipe.yaml", "configs/llama2-7b.yaml"],
     "runs/llama2-7B-vicuna-recipe"),
    (["configs/llama7b-vicuna.yaml", "configs/tinyllama-1.1b.yaml"], "runs/tinyllama-1.1B"),
])
def test_each_base_and_its_recipe_run_apart(files, run):
    """The recipe names its variant, not a run: on each base, in either order, it is that
    base's recipe run, never the LLaMA 7B recipe's."""
    assert run_layout.run_dir(run_layout.merged_config([str(REPO / f) for f in files])) == run


@pytest.mark.parametrize("key, edit", [
    ("data.corpora.alpaca_clean.json", lambda c: c["data"]["corpora"]["alpaca_clean"].update(
        json="synthetic/nowhere.json")),
    ("data.corpora.extra.json", lambda c: c["data"]["corpora"].update(
        extra={"json": "synthetic/nowhere.json", "format": "alpaca", "weight": 1})),
    ("data.corpora.extra.url", lambda c: c["data"]["corpora"].update(
        extra={"url": "synthetic/nowhere.txt", "weight": 1})),
    ("inference.references", lambda c: c["inference"].update(references="synthetic/nowhere.json")),
    ("benchmarks.mmlu.data", lambda c: c["benchmarks"]["mmlu"].update(data="synthetic/nowhere")),
    ("base.tokenizer_model", lambda c: (c.pop("synthetic"), c["base"].update(
        model_dir="llama/7B", tokenizer_model="synthetic/nowhere.model"))),
])
def test_a_configured_input_that_does_not_exist_fails_at_parse_time(tmp_path, key, edit):
    """Named by key and path, before any job is planned, whatever is on disk (a synthetic file
    the tiny default makes counts: no rule makes synthetic/nowhere.json)."""
    work = clone(tmp_path / "work")
    random_base.write_placeholder(work / "llama" / "7B", "7B")  # the one input that exists
    result = snakemake(work, "-n", "all", configfile=edited_config(tmp_path, edit), check=False)
    assert result.returncode != 0
    assert re.search(rf"{re.escape(key)}: \S*nowhere\S* does not exist", result.stderr), \
        result.stderr[-2000:]
    assert "Building DAG" not in result.stdout + result.stderr


def test_the_7b_config_without_its_base_names_the_missing_directory(tmp_path):
    work = clone(tmp_path / "work")
    result = snakemake(work, "-n", "all", "--configfile", "configs/llama7b-vicuna.yaml",
                       check=False)
    assert result.returncode != 0
    assert "base.model_dir: llama/7B does not exist" in result.stderr


def test_the_tokenizer_is_found_in_the_model_directory_or_beside_it(tmp_path):
    model = tmp_path / "llama" / "7B"
    model.mkdir(parents=True)
    assert config_check.default_tokenizer(str(model)) == str(model / "tokenizer.model")
    (tmp_path / "llama" / "tokenizer.model").write_bytes(b"x")  # Meta's download
    assert config_check.default_tokenizer(str(model)) == str(tmp_path / "llama" / "tokenizer.model")
    (model / "tokenizer.model").write_bytes(b"x")  # Hugging Face's directory: its own first
    assert config_check.default_tokenizer(str(model)) == str(model / "tokenizer.model")


def test_alpaca_records_are_laid_out_as_the_tutorials_prompts(tmp_path):
    records = [{"instruction": "Name a colour.", "input": "", "output": "Red."},
               {"instruction": "Add them.", "input": "2 and 3\nplease", "output": "5"}]
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(records))
    prompts, references = flatten.alpaca_prompts(path)
    tutorial = (REPO / "configs" / "input_examples.txt").read_text(encoding="utf-8").splitlines()
    # the same layout as the tutorial's own input_examples.txt, up to "### Response:"
    assert all(line.endswith("### Response:" + prompt.NEWLINE) for line in tutorial + prompts)
    assert prompts[0] == prompt.to_line(prompt.alpaca("Name a colour.", "", ""))
    assert "2 and 3" + prompt.NEWLINE + "please" in prompts[1]
    assert references == ["Red.", "5"]
    path.write_text("\n".join(json.dumps({"instruction": r["instruction"]}) for r in records))
    assert flatten.alpaca_prompts(path) == (prompts[:1] + [prompt.to_line(
        prompt.alpaca("Add them.", "", ""))], None)  # JSON lines, no outputs: no references


@pytest.mark.parametrize("records, message", [
    ([{"instruction": "a", "output": "x"}, {"instruction": "b"}], "record 1: no 'output'"),
    ([{"input": "x"}], "record 0: field 'instruction' is missing"),
    ([{"instruction": " "}], "record 0: empty 'instruction'"),
    ([], "no records"),
])
def test_bad_prompt_records_are_named(tmp_path, records, message):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        flatten.alpaca_prompts(path)


def test_prompt_records_plan_their_layout_and_references(tmp_path):
    work = clone(tmp_path / "work")
    (work / "prompts.jsonl").write_text(json.dumps({"instruction": "Hi", "output": "Hello"}) + "\n")

    def edit(c):
        c["inference"]["input_examples"] = "prompts.jsonl"
        c["inference"].pop("references")
    jobs, out = plan(work, "all", f"--configfile={edited_config(tmp_path, edit)}")
    assert jobs.count("inference_prompts") == 1
    assert "runs/llama-tiny/inputs/references.txt" in outputs(out)
    evaluate = out.split("rule evaluate:")[1].split("\n\n")[0]
    assert "runs/llama-tiny/inputs/input_examples.txt" in evaluate
    assert "runs/llama-tiny/inputs/references.txt" in evaluate


def test_only_the_newest_steps_releases_are_kept(tmp_path):
    save = tmp_path / "finetuned_m" / "m-vicuna-onmt"
    save.parent.mkdir()
    names = ["m-vicuna-onmt_step_400.pt", "m-vicuna-onmt_step_400.concat.pt",
             "m-vicuna-onmt_step_800.concat.pt", "m-vicuna-onmt_step_1000.concat.pt", "other.txt",
             "m-vicuna-onmt_step_1000_PEFT/adapter_config.json",
             "m-vicuna-onmt_step_400.concat_CT2/model.bin",
             "m-vicuna-onmt_step_800.concat_CT2/model.bin",
             "m-vicuna-onmt_step_800.concat_HF/config.json"]
    for name in names:
        (save.parent / name).parent.mkdir(exist_ok=True)
        (save.parent / name).write_text("x")
    assert run_layout.newest_release(save, ".concat_CT2") == save.parent / \
        "m-vicuna-onmt_step_800.concat_CT2"
    removed = run_layout.prune_older_steps(save, 800)
    assert sorted(p.name for p in removed) == [
        "m-vicuna-onmt_step_1000.concat.pt", "m-vicuna-onmt_step_1000_PEFT",
        "m-vicuna-onmt_step_400.concat.pt", "m-vicuna-onmt_step_400.concat_CT2"]
    left = sorted(p.name for p in save.parent.iterdir())
    assert left == ["m-vicuna-onmt_step_400.pt", "m-vicuna-onmt_step_800.concat.pt",
                    "m-vicuna-onmt_step_800.concat_CT2", "m-vicuna-onmt_step_800.concat_HF",
                    "other.txt"]  # LoRA step checkpoints are the training's (keep_checkpoint)


def test_the_makefile_finds_the_run_of_layered_configs(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"model_name": "m", "train": {"lora": {"rank": 2}}}))
    b.write_text(yaml.safe_dump({"run_name": "r", "train": {"lora": {"alpha": 4}}}))
    assert run_layout.merged_config([str(a), str(b)])["train"]["lora"] == {"rank": 2, "alpha": 4}
    assert run_layout.run_dir(run_layout.merged_config([str(a)])) == "runs/m"
    assert run_layout.run_dir(run_layout.merged_config([str(a), str(b)])) == "runs/r"


def test_older_steps_ggufs_and_modelfiles_are_pruned_and_listed(tmp_path):
    save = tmp_path / "finetuned_m" / "m-vicuna-onmt"
    save.parent.mkdir()
    names = ["m-vicuna-onmt_step_400.concat-q8_0.gguf", "m-vicuna-onmt_step_400.concat.Modelfile",
             "m-vicuna-onmt_step_800.concat.pt", "m-vicuna-onmt_step_800.concat-q4_k_m.gguf",
             "m-vicuna-onmt_step_800.concat.Modelfile", "m-vicuna-onmt_step_800.gguf.txt"]
    for name in names:
        (save.parent / name).write_text("x")
    assert run_layout.newest_release(save, "-q4_k_m.gguf") == save.parent / names[3]
    removed = run_layout.prune_older_steps(save, 800)
    assert sorted(p.name for p in removed) == sorted(names[:2])
    summary = run_layout.summary(tmp_path)
    assert "GGUF" in summary and "Ollama Modelfile" in summary and names[3] in summary


def test_older_steps_hub_folders_are_pruned_and_listed_as_such(tmp_path):
    save = tmp_path / "finetuned_m" / "m-vicuna-onmt"
    save.parent.mkdir()
    names = ["m-vicuna-onmt_step_400.hub_GGUF", "m-vicuna-onmt_step_800.concat.pt",
             "m-vicuna-onmt_step_800.hub_PEFT", "m-vicuna-onmt_step_800_PEFT",
             "m-vicuna-onmt_step_800.hub_notes"]
    for name in names:
        (save.parent / name).mkdir()
        (save.parent / name / "README.md").write_text("x")
    assert [p.name for p in run_layout.prune_older_steps(save, 800)] == [names[0]]
    summary = run_layout.summary(tmp_path).splitlines()
    assert [line.split()[:2] for line in summary if "_step_800" in line] == [
        ["merged", "checkpoint"], ["Hub", "folder"], ["PEFT", "adapter"]]  # .hub_notes: none
