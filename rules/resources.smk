# What each job gets: the tools on its PATH, and its memory, time, disk and GPUs. The CPUs,
# partition and account come from the profile (profiles/*/config.yaml), not from here.
import json
import math
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod


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


# --- Memory ------------------------------------------------------------------------------------
# Peak resident memory of a job that loads a model = a x (size of that checkpoint on disk) + b,
# fitted per rule by benchmarks/job_memory.py on 7B-shaped checkpoints (BENCHMARKS.md) and read
# from its JSON; a job asks for the fit times MARGIN plus HEADROOM_MB, and each retry (the
# profile's `retries`) after an out-of-memory kill for half as much again. Before the checkpoint exists (a dry run, a
# job further down the graph) the base model's files stand in: every checkpoint of the workflow
# is the base's size or less (the ct2 release about half).
MEMORY_FITS_FILE = Path(workflow.basedir) / "benchmarks" / "job_memory.json"
MEMORY_FIT = {rule: (max(fit["a"], 0.0), fit["b_mb"])  # a flat fit may come out a hair below 0
              for rule, fit in json.loads(MEMORY_FITS_FILE.read_text())["rules"].items()}
# The fits hold where they were measured (checkpoints of 0.9-2 GB); a small model's job still
# starts the interpreter with torch and OpenNMT-py, which a job that loads no weights measures.
# A line may cross 0 above the origin (simple_inference_ct2: 2.00 x size - 87 MB).
MEMORY_FLOOR_MB = MEMORY_FIT["extract_vocabulary"][1]
MARGIN = 1.25
# The interpreter's share differs between machines (extract_vocabulary, the same job: 371 MB
# on CI's, 306 MB where the fits were measured), beyond what MARGIN gives a small job.
HEADROOM_MB = 256
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


def mem_mb(fit, key="model"):
    """A resource callable: the job's memory from the size of its input `key`, by the measured
    fit of `fit` (a rule's name; it may name wildcards: "simple_inference_{mode}")."""
    names = [fit.format(mode=mode) for mode in MODES] if "{mode}" in fit else [fit]
    missing = [name for name in names if name not in MEMORY_FIT]
    if missing:  # at parse time, not when a job is planned
        raise ValueError(f"{MEMORY_FITS_FILE}: no memory fit for {', '.join(missing)}: measure "
                         "it with benchmarks/job_memory.py, or size the rule on another fit")

    def mem(wildcards, input, attempt):
        a, b = MEMORY_FIT[fit.format(**wildcards)]
        need = max(a * model_mb(input[key]) + b, MEMORY_FLOOR_MB)
        return math.ceil((need * MARGIN + HEADROOM_MB) * (1 + (attempt - 1) / 2))

    return mem


def runtime_min(key="model", minutes=10):
    """A resource callable: minutes for a job that reads and writes one checkpoint."""

    def runtime(wildcards, input, attempt):
        return math.ceil((minutes + model_mb(input[key]) / 1024 * SECONDS_PER_GB / 60) * attempt)

    return runtime


def scoring_runtime_min(key, minutes_per_gb, minutes=10):
    """A resource callable: minutes for a job that runs a model of input `key`'s size over a
    benchmark (`minutes_per_gb` of checkpoint: an estimate per benchmark)."""

    def runtime(wildcards, input, attempt):
        return math.ceil((minutes + model_mb(input[key]) / 1024 * minutes_per_gb) * attempt)

    return runtime


def disk_mb(key="model"):
    """A resource callable: room for a checkpoint the size of input `key` (what the job writes)."""
    return lambda wildcards, input: math.ceil(model_mb(input[key]))


def hf_disk_mb(key, dtype):
    """disk_mb for a Hugging Face export of input `key` in `dtype` (a float16 checkpoint, as a
    7B's is, doubles in float32)."""
    checkpoint_mb = disk_mb(key)
    factor = {"float16": 1, "bfloat16": 1, "float32": 2}[dtype]
    return lambda wildcards, input: math.ceil(checkpoint_mb(wildcards, input) * factor)


def gpus(device):
    """One GPU for a job whose configured device is `cuda`, none otherwise."""
    return 1 if device == "cuda" else 0


def mode_gpus(wildcards):
    """A resource callable: gpus(inference.device) for a mode that runs there (it reads
    `device`: py, ct2), none for one that runs on the CPU whatever it says (gguf)."""
    runs_on_device = "device" in engines.engine_class(wildcards.mode).config_keys
    return gpus(config["inference"]["device"]) if runs_on_device else 0
