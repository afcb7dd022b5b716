"""The README's 7B command, planned (`--dry-run`) on placeholder bases of the real size: Meta's
params.json and sparse consolidated.NN.pth files, for 7B (one 13.5 GB shard) and 13B (two).
Every job asks for at least the memory measured for its checkpoint's size
(benchmarks/job_memory.json), and for a GPU exactly where it runs a model on `cuda`."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import BIN, REPO, SEVEN_B, clone, snakemake

sys.path.insert(0, str(REPO / "benchmarks"))
import job_plan  # noqa: E402 (benchmarks/job_plan.py: the plan, as docs/slurm.md prints it)

MEASURED = json.loads((REPO / "benchmarks" / "job_memory.json").read_text())["rules"]
# Jobs that run a model on the configured device; `evaluate` only with something to score.
DEVICE_RULES = {"simple_inference", "mmlu"}
TRAINING = "finetune"


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, tuple[float, list[dict]]]:
    """The README's 7B command as written, plus --dry-run, on a placeholder base of the real
    size; for 13B with an override file that points `base` at it, as a user with that model
    would, for the other bases with their file of configs/ (benchmarks/job_plan.py, which
    prints docs/slurm.md's table from these plans): {base: (GiB of weights, jobs)}."""
    assert job_plan.SEVEN_B == SEVEN_B  # the command the README shows
    work = clone(tmp_path_factory.mktemp("plans"))
    return {model: job_plan.plan(model, work, str(BIN / "snakemake")) for model in job_plan.BASES}


@pytest.fixture(params=list(job_plan.BASES))
def plan(request, plans) -> tuple[str, float, list[dict]]:
    size_gib, jobs = plans[request.param]
    return request.param, size_gib * 1024, jobs


def test_the_whole_graph_is_planned(plan):
    model, _, jobs = plan
    rules = {job["rule"] for job in jobs}
    assert rules >= {"download_dataset", "convert_llama", "extract_vocabulary", "finetune_config",
                     "finetune_samples", "finetune", "merge_lora", "release_ct2", "release_hf",
                     "release_peft", "release_gguf", "translate_opts",
                     "simple_inference", "evaluate", "training_curves", "data_report",
                     "mmlu_download", "mmlu", "publish"}
    assert not rules & {"synthetic_data", "pretrain_base", "flatten_dataset"}
    # a base in Meta's layout is exported for the PEFT adapter; a Hugging Face one is its own
    assert ("release_hf_base" in rules) == (not job_plan.BASES[model].hf)


def test_each_job_asks_for_at_least_its_measured_memory(plan):
    model, size_mb, jobs = plan
    print(f"{model}: {size_mb / 1024:.1f} GiB of weights")
    for job in jobs:
        name = job["rule"] + (f"_{job['wildcards']['mode']}" if "mode" in job["wildcards"] else "")
        if name in MEASURED:
            fit = MEASURED[name]
            # every checkpoint of the run is at most the base's size (float16 all along)
            need = fit["a"] * size_mb + fit["b_mb"]
            asked = int(job["resources"]["mem_mb"])
            print(f"  {name}: asks {asked / 1024:.1f} GiB, measured fit {need / 1024:.1f} GiB")
            assert asked >= need, (name, asked, need)


def test_a_gpu_exactly_where_a_model_runs_on_cuda(plan):
    """The 7B config runs inference on `cuda`: the py and ct2 modes ask for a GPU, as training
    does; the gguf mode runs on the CPU (llama.cpp, built for it) and asks none; the evaluation
    has no held-out corpus and no references there, loads no model, and asks none."""
    _, _, jobs = plan
    modes = {job["wildcards"].get("mode") for job in jobs if job["rule"] == "simple_inference"}
    assert modes == {"py", "ct2", "gguf"}
    for job in jobs:
        gpu = int(job["resources"].get("gpu", 0))
        on_device = job["rule"] in DEVICE_RULES | {TRAINING} and \
            job["wildcards"].get("mode") != "gguf"
        assert gpu == on_device, job


def test_a_small_model_asks_at_least_what_a_job_without_weights_uses(tmp_path):
    """The tiny default on SLURM, planned before its base exists: the fits are lines measured on 0.9-2 GB
    checkpoints, one of which crosses zero above the origin (simple_inference_ct2); every job
    still asks for the interpreter a job that loads no weights measures, with the margin."""
    work = clone(tmp_path)
    jobs = job_plan.planned_jobs(snakemake(work, "all", "--profile", "profiles/slurm", "--dry-run").stdout)
    floor = MEASURED["extract_vocabulary"]["b_mb"] * 1.25
    assert MEASURED["simple_inference_ct2"]["b_mb"] < 0 < floor
    sized = [job for job in jobs
             if job["rule"] in MEASURED or f"{job['rule']}_py" in MEASURED]
    assert {job["rule"] for job in sized} >= {"convert_llama", "simple_inference", "finetune"}
    for job in sized:
        assert int(job["resources"]["mem_mb"]) >= floor, job


def test_the_plan_on_docs_slurm_is_the_one_printed_from_the_workflow(plans):
    """docs/slurm.md's job table is what benchmarks/job_plan.py prints from the plan itself
    (regenerate it with that command after a change of the fits or the rules; `--check` compares
    as this test does)."""
    assert job_plan.page_table(REPO / "docs" / "slurm.md") == job_plan.table(plans)
