# Config validation (before any job starts) and the paths every stage agrees on.
import json
import math
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version, validate

from vicuna import config_check

min_version("9.0")


# Strict types first (YAML's 800.0 is no integer, its 2e-5 is a string: the message says so),
# then Snakemake's own validation, which also fills the schema's defaults.
config_check.validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
validate(config, schema="../schemas/config.schema.yaml")

# Too light to send to a cluster: they write a small file from the config.
localrules:
    all,
    finetune_config,
    translate_opts,


# The tutorial's tools are called by name: scripts/ goes first on the PATH of every job, and
# the package beside it on PYTHONPATH. Their `#!/usr/bin/env python` must find the Python that
# runs Snakemake (a venv that was never activated, also on a SLURM node, where the job runs
# that same interpreter), except where Snakemake deploys a conda environment of its own.
def job_path():
    scripts = Path(workflow.basedir) / "scripts"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return f"{scripts}:$PATH"
    return f"{scripts}:{Path(sys.executable).parent}:$PATH"


shell.prefix(
    f"export PATH={job_path()}; "
    f"export PYTHONPATH={workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)
MODES = ["py", "ct2"]

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
    """The foundation model's files, in whichever layout model_dir holds (detected, as the
    converter does): Meta's params.json + consolidated.*.pth, or Hugging Face's config.json +
    weights. Before the tiny default's base exists, the files its pretraining makes."""
    model_dir = Path(config["base"]["model_dir"])
    meta = [model_dir / "params.json", *sorted(model_dir.glob("consolidated.*.pth"))]
    if (model_dir / "config.json").is_file() and len(meta) == 1:
        weights = [p for pattern in ("*.safetensors", "pytorch_model*.bin", "*.index.json")
                   for p in sorted(model_dir.glob(pattern))]
        return [str(model_dir / "config.json"), *map(str, weights)]
    return [str(p) for p in meta] if len(meta) > 1 else [str(meta[0]), str(model_dir / "consolidated.00.pth")]


def corpus_path(name):
    return f"dataAI/{name}.txt"


def training_corpus(name):
    """The file the finetuning reads for training corpus `name`: its windows with
    data.split_long (rule split_long, in rules/data.smk), else the corpus itself."""
    return rules.split_long.output.text.format(corpus=name) if SPLIT_LONG else corpus_path(name)


def check_config():
    """Cross-key checks the schema cannot express; they name the key at fault."""
    if "synthetic" in config:
        model = config["synthetic"]["model"]
        if model["dim"] % model["n_heads"]:
            raise ValueError(f"synthetic.model.dim ({model['dim']}) must be divisible by "
                             f"synthetic.model.n_heads ({model['n_heads']})")
    train = config["train"]
    if train["quantization"]["layers"] and not train["quantization"]["type"]:
        raise ValueError("train.quantization.type must be set when train.quantization.layers "
                         "is not empty (OpenNMT-py would silently quantize nothing)")
    if train["save_checkpoint_steps"] > train["train_steps"]:
        raise ValueError("train.save_checkpoint_steps must not exceed train.train_steps")


check_config()


# --- Job sizes -----------------------------------------------------------------------------------
# Peak resident memory of a job that loads a model = a x (size of that checkpoint on disk) + b,
# fitted per rule by benchmarks/job_memory.py on 7B-shaped checkpoints (BENCHMARKS.md), with
# MARGIN on top; each retry (the profile's `retries`) after an out-of-memory kill asks for half as
# much again. Before the checkpoint exists (a dry run, a job further down the graph) the base
# model's files stand in: every checkpoint of the workflow is the base's size or less.
MEMORY_FIT = {  # rule -> (a, b in MB); measured a, b in benchmarks/job_memory.json
    "convert_llama": (1.05, 400),  # measured 1.00, 370: one copy of the output
    "extract_vocabulary": (0.05, 400),  # 0.00, 366: the checkpoint is memory-mapped
    "finetune": (1.3, 1400),  # 1.20, 1327 on the CPU in fp32
    "merge_lora": (1.35, 400),  # 1.29, 336
    "release_ct2": (0.95, 1400),  # 0.87, 1374
    "simple_inference_py": (1.95, 800),  # 1.87, 764
    "simple_inference_ct2": (1.75, 300),  # 1.68, 281, of the release's size (half the base's)
    "heldout_loss": (2.1, 500),  # 2.03, 491: an fp32 model of an fp16 checkpoint, on the CPU
    "evaluate": (1.95, 800),  # runs the py engine on the base, with references only
}
MARGIN = 1.25
SECONDS_PER_GB = 60  # reading, converting and writing a checkpoint: 9 s/GB measured, a slow disk


def files_mb(paths):
    """Size in MB of the files and directories (recursively) that exist among `paths`."""
    total = 0
    for path in map(Path, [paths] if isinstance(paths, str) else paths):
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            total += path.stat().st_size
    return total / 2**20


def model_mb(paths):
    """The checkpoint a job loads, in MB; the base model's size while it does not exist yet."""
    return files_mb(paths) or files_mb(base_model_files())


def mem_mb(rule, key="model"):
    """A resource callable: the job's memory from the size of its input `key` (`rule` may
    name wildcards: "simple_inference_{mode}")."""
    def mem(wildcards, input, attempt):
        a, b = MEMORY_FIT[rule.format(**wildcards)]
        return math.ceil((a * model_mb(input[key]) + b) * MARGIN * (1 + (attempt - 1) / 2))

    return mem


def runtime_min(key="model", minutes=10):
    """A resource callable: minutes for a job that reads and writes one checkpoint."""

    def runtime(wildcards, input, attempt):
        return math.ceil((minutes + model_mb(input[key]) / 1024 * SECONDS_PER_GB / 60) * attempt)

    return runtime


def disk_mb(key="model"):
    """A resource callable: room for a checkpoint the size of input `key` (what the job writes)."""
    return lambda wildcards, input: math.ceil(model_mb(input[key]))


def gpus(device):
    """One GPU for a job whose configured device is `cuda`, none otherwise."""
    return 1 if device == "cuda" else 0
