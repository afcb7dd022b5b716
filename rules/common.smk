# Config validation (before any job starts) and the paths every stage agrees on.
import json
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version, validate

from vicuna import config_check, engines
from vicuna.layout import model_files, planned_layout

min_version("9.0")


# Strict types first (YAML's 800.0 is no integer, its 2e-5 is a string: the message says so),
# then Snakemake's own validation, which also fills the schema's defaults.
config_check.validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
validate(config, schema="../schemas/config.schema.yaml")
# What the schema cannot express, across keys (each message names the keys).
config_check.check_keys(config)

MODES = list(engines.REGISTRY)

# Artifact names follow the tutorial: llama7B-vicuna-onmt.pt, finetuned_llama7B/...
MODEL = config["model_name"]
BASE_CHECKPOINT = f"{MODEL}-vicuna-onmt.pt"
FINETUNED = f"finetuned_{MODEL}"
SAVE_MODEL = f"{FINETUNED}/{MODEL}-vicuna-onmt"
STEP_CHECKPOINT = f"{SAVE_MODEL}_step_{config['train']['train_steps']}"

VALID = "valid" in config["data"]
# Corpora scored by `evaluate` alone, by name: their source is dataAI/heldout_<name>.txt.
HELDOUT = {name: f"heldout_{name}" for name in config["data"].get("heldout", {})}
SOURCES = {
    **config["data"]["corpora"],
    **({"valid": config["data"]["valid"]} if VALID else {}),
    **{source: config["data"]["heldout"][name] for name, source in HELDOUT.items()},
}
JSON_SOURCES = sorted(name for name, spec in SOURCES.items() if "json" in spec)
# data.split_long: the training corpora are read through rule split_long (dataAI/<corpus>.split.txt).
SPLIT_LONG = config["data"].get("split_long", False)
URL_SOURCES = sorted(name for name, spec in SOURCES.items() if "url" in spec)


def one_of(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(names) if names else "(?!)"


def as_json(section):
    """A config section as one shell-quotable JSON string (for a script's --*_json flag)."""
    return json.dumps(section, sort_keys=True)


def base_model_files():
    """The foundation model's files, in whichever layout model_dir holds, as the converter reads
    them (vicuna.layout.model_files); before the tiny default's base exists, the files its
    pretraining makes."""
    return [str(p) for p in model_files(config["base"]["model_dir"])]


def corpus_path(name):
    return f"dataAI/{name}.txt"


def training_corpus(name):
    """The file the finetuning reads for training corpus `name`: its windows with
    data.split_long (rule split_long, in rules/data.smk), else the corpus itself."""
    return rules.split_long.output.text.format(corpus=name) if SPLIT_LONG else corpus_path(name)


def check_base_model_dir():
    """A base.model_dir that does not exist yet, said once at parse time (by the main process):
    the tiny default's pretraining builds it; any other config needs the foundation model
    there, and Snakemake then stops on the missing input files it names."""
    model_dir = config["base"]["model_dir"]
    if Path(model_dir).exists() or not workflow.is_main_process:
        return
    if "synthetic" in config:
        logger.info(f"base.model_dir {model_dir} does not exist yet: pretrain_base will build "
                    f"the tiny base there (config key `synthetic`)")
    else:
        logger.warning(f"base.model_dir: {model_dir} does not exist: put the foundation model "
                       f"there (Meta's params.json + consolidated.*.pth, or a Hugging Face "
                       f"directory: config.json + *.safetensors or pytorch_model*.bin), or "
                       f"point base.model_dir at it")


check_base_model_dir()
