"""Runs apart, through the user's path: `make run` (the tiny default), then in the same checkout
the 7B command's dry run and your own base and data (docs/own-model.md's commands as written,
on a small random Hugging Face LLaMA): each config's files are its own (runs/<run_name>/),
checked by checksums before and after; a changed or missing source is always seen; `make serve
CONFIG=...` serves that run's release; older steps' releases are pruned; `make clean CONFIG=...`
removes that run alone."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import BIN, LLAMA_TOKENIZER, REPO, env, free_port, page_commands, run, snakemake, started

from vicuna import prompt, tokenizer
from vicuna.testing import random_base
from vicuna.tiny import synthetic

TINY = "runs/llama-tiny"
OWN = "runs/my-model"
OWN_CONFIG = "my-model.yaml"  # the page's copy of configs/own-model.yaml
PAGE = page_commands(REPO / "docs" / "own-model.md")


def checksums(root: Path, *folders: str) -> dict[str, str]:
    """sha256 of every file under `folders` of `root` (Snakemake's timestamps aside)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted((root / folder).rglob("*"))
            if p.is_file() and p.name != ".snakemake_timestamp"}


def planned(tree: Path, *args: str) -> Counter:
    result = snakemake(tree, "-n", *args)
    return Counter(re.findall(r"^(?:local)?rule (\w+):", result.stdout, re.M))


@pytest.fixture(scope="module")
def tree(tiny_run, tmp_path_factory) -> Path:
    """A checkout after `make run` (a copy of the tiny default's run, its records kept)."""
    tree = tmp_path_factory.mktemp("user") / "repo"
    shutil.copytree(tiny_run, tree, symlinks=True)
    return tree


def test_after_make_run_the_7b_dry_run_plans_its_downloads_and_whole_training(tree, tmp_path):
    seven_b = tmp_path / "repo"
    shutil.copytree(tree, seven_b, symlinks=True)
    random_base.write_placeholder(seven_b / "llama" / "7B", "7B")
    (seven_b / "llama" / "tokenizer.model").write_bytes(b"")  # read by no job of a dry run
    jobs = planned(seven_b, "all", "--configfile", "configs/llama7b-vicuna.yaml")
    assert jobs["download_dataset"] == 2 and jobs["mmlu_download"] == 1
    for rule in ("convert_llama", "extract_vocabulary", "finetune_config", "finetune",
                 "merge_lora", "release_ct2", "release_hf", "release_hf_base", "release_peft",
                 "data_report", "evaluate", "mmlu"):
        assert jobs[rule] == 1, (rule, jobs)
    assert jobs["simple_inference"] == jobs["translate_opts"] == 3  # py, ct2, gguf
    assert planned(seven_b, "all") == Counter()  # and the demo is still done


def test_a_corpus_that_does_not_exist_after_a_first_run_is_an_error(tree, tmp_path):
    config = yaml.safe_load((tree / "config.yaml").read_text())
    config["data"]["corpora"]["alpaca_clean"]["json"] = "synthetic/renamed.json"
    config["data"]["corpora"]["extra"] = {"json": "data/extra.json", "format": "alpaca",
                                          "weight": 1}
    path = tmp_path / "moved.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tree, "-n", "all", configfile=path, check=False)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"error: {path}: data.corpora.alpaca_clean.json: synthetic/renamed.json does not exist",
        f"error: {path}: data.corpora.extra.json: data/extra.json does not exist"]


def test_a_corpus_whose_source_changed_is_remade(tree, tmp_path):
    """JSON -> a flattened file by path: the download rule remakes it (Snakemake alone trusts
    the text file made by the other rule); another JSON file: flattened again."""
    flat = tmp_path / "alpaca.txt"
    shutil.copy(tree / TINY / "dataAI/alpaca_clean.txt", flat)
    config = yaml.safe_load((tree / "config.yaml").read_text())
    config["data"]["corpora"]["alpaca_clean"] = {"url": str(flat), "weight": 10}
    (tmp_path / "url.yaml").write_text(yaml.safe_dump(config))
    jobs = planned(tree, "all", f"--configfile={tmp_path / 'url.yaml'}")
    assert jobs["download_dataset"] == 1 and jobs["finetune"] == 1
    shutil.copy(tree / "synthetic/alpaca.json", tmp_path / "same.json")
    config["data"]["corpora"]["alpaca_clean"] = {"json": str(tmp_path / "same.json"),
                                                 "format": "alpaca", "weight": 10}
    (tmp_path / "json.yaml").write_text(yaml.safe_dump(config))
    assert planned(tree, "all", f"--configfile={tmp_path / 'json.yaml'}")["flatten_dataset"] == 1


def write_own_base_and_data(tree: Path) -> int:
    """What configs/own-model.yaml names: a random Hugging Face LLaMA (grouped-query attention)
    with its tokenizer.model in models/my-base, and alpaca, ShareGPT, validation and prompt
    records in data/; the number of prompts."""
    transformers = pytest.importorskip("transformers")
    import torch

    sets = synthetic.generate(seed=11, n_alpaca=300, n_sharegpt=60, n_heldout=20, n_pretrain=0)
    base = tree / "models" / "my-base"
    base.mkdir(parents=True)
    if LLAMA_TOKENIZER.is_file():  # the real one where the fixtures are; else a small one
        shutil.copy(LLAMA_TOKENIZER, base / "tokenizer.model")
    else:
        tokenizer.train([prompt.alpaca(**r) for r in sets["alpaca"]], 320, base / "tokenizer.model")
    vocab = tokenizer.load(base / "tokenizer.model").get_piece_size()
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        max_position_embeddings=2048, tie_word_embeddings=False))
    model.save_pretrained(base)
    data = tree / "data"
    data.mkdir()
    prompts = sets["heldout"][:6]  # with their outputs: the references
    for name, records in (("alpaca", sets["alpaca"]), ("sharegpt", sets["sharegpt"]),
                          ("valid", sets["heldout"][6:]), ("prompts", prompts)):
        (data / f"{name}.json").write_text(json.dumps(records))
    return len(prompts)


@pytest.fixture(scope="module")
def own_run(tree) -> tuple[Path, dict[str, str], int]:
    """docs/own-model.md's commands as written (copy the template, run it), in the checkout
    that holds the tiny default's run, on the base and data the template names; the tiny run's
    checksums from before."""
    n_prompts = write_own_base_and_data(tree)
    before = checksums(tree, TINY, "synthetic")
    assert PAGE[:2] == ["cp configs/own-model.yaml my-model.yaml",
                        "snakemake all --profile profiles/local --configfile my-model.yaml"]
    for command in PAGE[:2]:
        result = run(command, shell=True, cwd=tree, env=env(), timeout=1200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return tree, before, n_prompts


def test_the_own_model_template_runs_end_to_end_in_a_folder_of_its_own(own_run):
    tree, _, n_prompts = own_run
    run_dir = tree / OWN
    for mode in ("py", "ct2", "gguf"):
        lines = (run_dir / f"outputs/predictions_{mode}.txt").read_text().splitlines()
        assert len(lines) == n_prompts
    prompts = (run_dir / "inputs/input_examples.txt").read_text(encoding="utf-8").splitlines()
    records = json.loads((tree / "data/prompts.json").read_text())
    assert prompts == [prompt.to_line(prompt.alpaca(r["instruction"], r["input"], ""))
                       for r in records]  # laid out by the workflow, not by hand
    references = (run_dir / "inputs/references.txt").read_text(encoding="utf-8").splitlines()
    assert references == [prompt.to_line(r["output"]) for r in records]
    scores = json.loads((run_dir / "outputs/eval.json").read_text())
    assert "exact_match" in scores["finetuned"] and "exact_match" in scores["base"]
    step = run_dir / "finetuned_my-model/my-model-vicuna-onmt_step_20"
    adapter = json.loads((Path(f"{step}_PEFT") / "adapter_config.json").read_text())
    # portable: the Hugging Face base from the run's folder, never this machine's path
    assert adapter["base_model_name_or_path"] == "../../models/my-base"
    assert (run_dir / adapter["base_model_name_or_path"] / "config.json").is_file()
    config = json.loads((Path(f"{step}.concat_HF") / "config.json").read_text())
    assert (config["hidden_size"], config["num_key_value_heads"]) == (64, 2)
    for written in ("translate_opts_py.yaml", "translate_opts_ct2.yaml", "replicate_vicuna.yaml"):
        header = (run_dir / written).read_text().splitlines()[0]
        assert header.startswith(f"# Written by the workflow from {OWN_CONFIG} (rule "), header


def test_two_runs_in_one_checkout_leave_each_other_untouched(own_run):
    tree, before, _ = own_run
    assert checksums(tree, TINY, "synthetic") == before
    assert planned(tree, "all") == Counter()
    assert planned(tree, "all", "--configfile", OWN_CONFIG) == Counter()


def test_make_serve_with_config_serves_that_runs_release(own_run):
    tree, _, _ = own_run
    port = free_port()
    assert f"make serve CONFIG={OWN_CONFIG}" in PAGE
    with started(["make", "serve", f"CONFIG={OWN_CONFIG}", f"PORT={port}", f"VENV={BIN.parent}"],
                 cwd=tree, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                 text=True) as proc:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "make serve: nothing on the port after 180 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
                    models = json.loads(r.read())
                break
            except OSError:
                time.sleep(1)
    assert [m["id"] for m in models["data"]] == ["my-model-vicuna-onmt_step_20.concat_CT2"]


def test_a_successful_run_keeps_only_the_newest_steps_releases(own_run, tmp_path):
    tree, _, _ = own_run
    finetuned = tree / OWN / "finetuned_my-model"
    older = [finetuned / "my-model-vicuna-onmt_step_10.concat.pt",
             finetuned / "my-model-vicuna-onmt_step_10.concat_CT2" / "model.bin"]
    for path in older:  # as a run with train_steps 10 left them
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    config = yaml.safe_load((tree / OWN_CONFIG).read_text())
    config["release"]["keep_older_steps"] = True
    (tmp_path / "keep.yaml").write_text(yaml.safe_dump(config))
    snakemake(tree, "-c1", "all", "--forcerun", "training_curves",
              f"--configfile={tmp_path / 'keep.yaml'}")
    assert all(path.exists() for path in older)  # kept when asked
    result = snakemake(tree, "-c1", "all", "--forcerun", "training_curves",
                       "--configfile", OWN_CONFIG)
    assert not any(path.exists() for path in older)
    assert "my-model-vicuna-onmt_step_10.concat_CT2: a release of an earlier train_steps" in \
        result.stdout + result.stderr
    assert (finetuned / "my-model-vicuna-onmt_step_20.concat_CT2" / "model.bin").is_file()


def test_make_clean_with_config_removes_that_run_alone(own_run):
    tree, before, _ = own_run
    assert f"make clean CONFIG={OWN_CONFIG}" in PAGE
    result = run(["make", "clean", f"CONFIG={OWN_CONFIG}", f"VENV={BIN.parent}"], cwd=tree,
                 env=env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tree / OWN).exists()
    assert (tree / "models/my-base/config.json").is_file() and (tree / "data/alpaca.json").is_file()
    assert checksums(tree, TINY, "synthetic") == before
