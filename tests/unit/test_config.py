"""The config: a missing, malformed or unknown key fails at parse time (`snakemake -n`, before
any job is planned) naming the key; cross-key checks; messages that say the cause and what to
do; the shipped configs (the tiny default, the 7B one and the Vicuna recipe) validate and plan."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest
import yaml
from helpers import REPO, clone, edited_config, snakemake

from vicuna import config_check
from vicuna.testing import random_base


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


def parse_error(tmp_path, edit) -> str:
    """`snakemake -n all` with the edited default config: fails before any job is planned."""
    workdir, before, result = dry_run(tmp_path, edited_config(tmp_path, edit))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Building DAG" not in output  # no job was even planned
    assert sorted(p.name for p in workdir.iterdir() if p.name != ".snakemake") == before
    return output


@pytest.mark.parametrize("section", ["corpora", "valid"])
def test_a_source_with_json_and_url_says_give_one(tmp_path, section):
    def edit(c):
        source = c["data"]["corpora"]["alpaca_clean"] if section == "corpora" else c["data"]["valid"]
        source["url"] = "https://example.org/alpaca.txt"

    output = parse_error(tmp_path, edit)
    where = "data.corpora.alpaca_clean" if section == "corpora" else "data.valid"
    assert f"{where}: give json+format or url, not both" in output
    assert "is valid under each of" not in output and "was unexpected" not in output


def test_a_source_with_half_of_json_format_names_the_missing_key(tmp_path):
    output = parse_error(tmp_path, lambda c: c["data"]["corpora"]["sharegpt"].pop("format"))
    assert "data.corpora.sharegpt: give json+format or url ('format' is missing)" in output
    assert "was unexpected" not in output


def test_a_negative_weight_is_named_as_such_and_nothing_else(tmp_path):
    output = parse_error(tmp_path, lambda c: c["data"]["corpora"]["alpaca_clean"].update(weight=-1))
    assert "data.corpora.alpaca_clean.weight: -1 is less than the minimum of 1" in output
    assert "was unexpected" not in output


def test_a_real_typo_beside_a_bad_weight_is_still_named(tmp_path):
    def edit(c):
        c["data"]["corpora"]["alpaca_clean"].update(weight=-1, sha265="0" * 64)

    output = parse_error(tmp_path, edit)
    assert "('sha265' was unexpected)" in output and "'weight' was unexpected" not in output
    assert "-1 is less than the minimum of 1" in output


def without_synthetic(c):
    """A config of one's own, not the tiny default: no `synthetic`, base in llama/7B."""
    c.pop("synthetic")
    c["base"] = {"model_dir": "llama/7B", "tokenizer_model": "llama/tokenizer.model"}


def test_a_missing_base_model_dir_is_named_with_what_goes_there(tmp_path):
    """At parse time, before any job is planned, one line naming the file, the key and what
    goes there; the tokenizer beside it too."""
    workdir, _, result = dry_run(tmp_path, edited_config(tmp_path, without_synthetic))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("error: config.yaml: base.model_dir: llama/7B does not exist: put the "
                        "foundation model there (Meta's params.json + consolidated.*.pth, or a "
                        "Hugging Face directory: config.json + *.safetensors or "
                        "pytorch_model*.bin), or point base.model_dir at it") == 1
    assert "error: config.yaml: base.tokenizer_model: llama/tokenizer.model does not exist" in output
    assert "Building DAG" not in output and "Traceback" not in output


def clone_with(tmp_path, configfile):
    workdir = clone(tmp_path / "work")
    shutil.copy(configfile, workdir / "config.yaml")
    return workdir


def test_an_existing_base_model_dir_passes_the_check(tmp_path):
    workdir = clone_with(tmp_path, edited_config(tmp_path, without_synthetic))
    (workdir / "llama" / "7B").mkdir(parents=True)
    result = snakemake(workdir, "-n", "all", check=False)
    output = result.stdout + result.stderr
    assert "base.model_dir" not in output
    # the config's other inputs are still named (it kept the tiny default's synthetic paths)
    assert "data.corpora.alpaca_clean.json: synthetic/alpaca.json does not exist" in output


def test_an_unsupported_base_is_named_at_parse_time(tmp_path):
    """A base the converter would refuse (another model_type) and a tokenizer that is not
    sentencepiece (Llama 3's tiktoken file) are named before any job is planned, with the
    other missing inputs, each in one line."""
    workdir = clone_with(tmp_path, edited_config(tmp_path, without_synthetic))
    (workdir / "llama" / "7B").mkdir(parents=True)
    (workdir / "llama" / "7B" / "config.json").write_text('{"model_type": "qwen2"}')
    (workdir / "llama" / "tokenizer.model").write_text("IQ== 0\nIg== 1\n")
    result = snakemake(workdir, "-n", "all", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Building DAG" not in output
    assert "error: config.yaml: base.model_dir: llama/7B/config.json: model_type 'qwen2', " \
           "only 'llama' and 'mistral' are supported" in output
    assert "error: config.yaml: base.tokenizer_model: llama/tokenizer.model: a tiktoken BPE " \
           "file (Llama 3's tokenizer.model?), not a sentencepiece model" in output
    assert "data.corpora.alpaca_clean.json: synthetic/alpaca.json does not exist" in output


def test_the_tiny_default_says_once_that_pretraining_builds_its_base(tmp_path):
    workdir = clone_with(tmp_path, REPO / "config.yaml")
    result = snakemake(workdir, "-n", "all")
    output = result.stdout + result.stderr
    note = ("base.model_dir synthetic/llama/tiny does not exist yet: pretrain_base will build "
            "the tiny base there")
    assert output.count(note) == 1
    assert "pretrain_base" in output.split(note)[-1]  # and it is planned
    (workdir / "synthetic/llama/tiny").mkdir(parents=True)  # once it is there: not a word
    again = snakemake(workdir, "-n", "all")
    assert "does not exist yet" not in again.stdout + again.stderr


SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_configs_are_valid(config):
    config_check.validate(config, SCHEMA)
    config_check.validate(yaml.safe_load((REPO / "configs" / "llama7b-vicuna.yaml").read_text()),
                          SCHEMA)


@pytest.mark.parametrize("yaml_text, words", [
    ("train_steps: 800.0", "train.train_steps: 800.0 is not of type 'integer'"),
    ("learning_rate: 2e-5", "write 2.0e-5: YAML reads 2e-5 without a dot"),
    ("train_steps: true", "train.train_steps: True is not of type 'integer'"),
])
def test_yaml_number_traps_are_named(config, yaml_text, words):
    config["train"].update(yaml.safe_load(yaml_text))  # as YAML reads it
    with pytest.raises(ValueError) as e:
        config_check.validate(config, SCHEMA)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_compute_type_is_one_of_ctranslate2s(config):
    config["inference"]["compute_type"] = "int4"
    with pytest.raises(ValueError, match=r"inference.compute_type: 'int4' is not one of"):
        config_check.validate(config, SCHEMA)
    config["inference"]["compute_type"] = "int8_float16"
    config_check.validate(config, SCHEMA)


def test_every_fault_is_named_in_one_message(config):
    config["train"]["lora"].pop("rank")
    config["train"]["learning_rat"] = 0.1
    with pytest.raises(ValueError) as e:
        config_check.validate(config, SCHEMA)
    assert "train.lora: 'rank' is a required property" in str(e.value)
    assert "'learning_rat' was unexpected" in str(e.value)


RECIPE = REPO / "configs" / "vicuna-recipe.yaml"


COMMAND = ("snakemake all --profile profiles/slurm --configfile configs/llama7b-vicuna.yaml "
           "configs/vicuna-recipe.yaml")


def test_the_recipe_changes_only_what_vicuna_did_differently():
    assert yaml.safe_load(RECIPE.read_text()) == {"variant": "vicuna-recipe",
                                                  "data": {"split_long": True},
                                                  "train": {"answer_loss_only": True}}
    tutorial = yaml.safe_load((REPO / "configs" / "llama7b-vicuna.yaml").read_text())
    assert tutorial["train"]["answer_loss_only"] is False and "split_long" not in tutorial["data"]
    assert COMMAND in RECIPE.read_text() and COMMAND in (REPO / "docs" / "data.md").read_text()


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
    # the recipe's run of its own, beside the tutorial's (runs/llama7B)
    assert "runs/llama7B-vicuna-recipe/dataAI/sharegpt.split.txt" in out
    assert "runs/llama7B-vicuna-recipe/dataAI/alpaca_clean.split.txt" in out


def test_a_gguf_type_the_run_does_not_release_is_named_at_parse_time(tmp_path):
    def edit(c):
        c["release"]["gguf"] = ["f16", "q4_k_m"]  # inference.gguf_type stays q8_0
    output = parse_error(tmp_path, edit)
    assert "inference.gguf_type is q8_0, which release.gguf (f16, q4_k_m) does not write" in output


def test_the_gguf_mode_reads_a_released_type_without_beam_search(config):
    """The gguf mode (llama.cpp) reads one of the GGUF files the run writes, and has no beam
    search; `release.gguf: []` leaves the mode out, and with it both checks."""
    ok = {"release": {"gguf": ["f16", "q8_0"]}, "inference": {"gguf_type": "q8_0", "beam_size": 1}}
    config_check.check_gguf_mode(ok)
    with pytest.raises(ValueError, match=r"^inference.gguf_type is f32, which release.gguf "
                                         r"\(f16, q8_0\) does not write"):
        config_check.check_gguf_mode({**ok, "inference": {"gguf_type": "f32", "beam_size": 1}})
    with pytest.raises(ValueError, match=r"^inference.beam_size is 4, but the gguf mode .* "
                                         r"release.gguf: \[\] to leave"):
        config_check.check_gguf_mode({**ok, "inference": {"gguf_type": "q8_0", "beam_size": 4}})
    config_check.check_gguf_mode({"release": {"gguf": []},
                                  "inference": {"gguf_type": "f32", "beam_size": 4}})
    assert config["inference"]["gguf_type"] in config["release"]["gguf"]  # the tiny default


@pytest.mark.parametrize("layered", ["llama2-7b", "tinyllama-1.1b", "mistral-7b", "vicuna-recipe"])
def test_a_layered_file_given_alone_says_what_it_goes_after(layered):
    """A base's file or the recipe is no whole config: given alone, one line says so and the
    command that layers it, not every required key of each section it changes."""
    result = snakemake(REPO, "all", "-n", "--configfile", f"configs/{layered}.yaml", check=False)
    assert result.returncode == 1
    errors = [line for line in (result.stdout + result.stderr).splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: configs/{layered}.yaml: not a whole config (no ")
    assert errors[0].endswith(f"--configfile configs/llama7b-vicuna.yaml configs/{layered}.yaml")
