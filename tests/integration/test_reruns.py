"""Each config key reaches only the rules it affects: after a change, `snakemake -n` plans
exactly the stale steps, per mode where a rule has one (translate_opts[ct2])."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from helpers import REPO, edited_config, snakemake


def modes(*rules: str, mode: tuple[str, ...] = ("py", "ct2", "gguf")) -> dict[str, int]:
    return {f"{rule}[{m}]": 1 for rule in rules for m in mode}


# Each Hub folder's card states the evaluation: whatever reruns `evaluate` rewrites the three
# (HF, PEFT, GGUF), and no release.
CARDS = {"publish": 3}
# A decoding option: every mode's options and predictions, then the scores; no held-out loss.
# The Modelfile carries the first mode's (py) decoding defaults.
INFERENCE = {**modes("translate_opts", "simple_inference"), "evaluate": 1,
             "release_modelfile": 1, **CARDS, "all": 1}
# A key one mode reads (vicuna.serve.engines.config_keys): that mode's jobs only.
CT2_ONLY = {**modes("translate_opts", "simple_inference", mode=("ct2",)), "evaluate": 1, **CARDS,
            "all": 1}
GGUF_ONLY = {**modes("translate_opts", "simple_inference", mode=("gguf",)), "evaluate": 1,
             **CARDS, "all": 1}
# cpu_threads: CTranslate2's and llama.cpp's
THREADS = {**modes("translate_opts", "simple_inference", mode=("ct2", "gguf")), "evaluate": 1,
           **CARDS, "all": 1}
# inference.precision is py's, and the held-out losses and MMLU run in it too.
PY_ONLY = {**modes("translate_opts", "simple_inference", mode=("py",)), "heldout_loss": 1,
           "mmlu": 1, "evaluate": 1, "release_modelfile": 1, **CARDS, "all": 1}
TRAINING = {"finetune_config": 1, "finetune": 1, "finetune_samples": 1, "merge_lora": 1,
            "training_curves": 1, "release_ct2": 1, "release_hf": 1, "release_peft": 1,
            "release_gguf": 3, "heldout_loss": 1, "mmlu": 1, **INFERENCE}
# A benchmark's setting: that benchmark, and the table that joins its scores.
BENCHMARK = {"mmlu": 1, "evaluate": 1, **CARDS, "all": 1}
# The Hugging Face releases: the merged model, the base, and the adapter that loads on it, and
# their two Hub folders.
HF_RELEASE = {"release_hf": 1, "release_hf_base": 1, "release_peft": 1, "publish": 2, "all": 1}
DATA = {"flatten_dataset": 4, "data_report": 1, **TRAINING}

CHANGES = {
    "decoding": (lambda c: c["inference"].update(max_length=32), INFERENCE),
    "sampling": (lambda c: c["inference"].update(random_sampling_temp=0.7), INFERENCE),
    "ct2 compute type": (lambda c: c["inference"].update(compute_type="int8"), CT2_ONLY),
    "cpu threads": (lambda c: c["inference"].update(cpu_threads=1), THREADS),
    # another GGUF file for the gguf mode (one the run releases already)
    "gguf type": (lambda c: c["inference"].update(gguf_type="f16"), GGUF_ONLY),
    "py precision": (lambda c: c["inference"].update(precision="fp16"), PY_ONLY),
    "lora": (lambda c: c["train"]["lora"].update(rank=4), TRAINING),
    "optimizer": (lambda c: c["train"].update(learning_rate=1e-3), TRAINING),
    "data": (lambda c: c["data"].update(on_error="skip"), DATA),
    "release": (lambda c: c["release"].update(quantization="int8"),
                {"release_ct2": 1, **CT2_ONLY}),
    "hf dtype": (lambda c: c["release"]["huggingface"].update(dtype="bfloat16"), HF_RELEASE),
    "mmlu shots": (lambda c: c["benchmarks"]["mmlu"].update(shots=3), BENCHMARK),
    "hf shards": (lambda c: c["release"]["huggingface"].update(max_shard_mb=1), HF_RELEASE),
    # one more GGUF type: its file alone, and the GGUF folder that holds it
    "gguf types": (lambda c: c["release"].update(gguf=["f16", "q8_0", "q4_k_m", "f32"]),
                   {"release_gguf": 1, "publish": 1, "all": 1}),
    # what the cards state and no file of the run records: the cards alone, no release
    "licence": (lambda c: c["release"].update(license="apache-2.0"), {**CARDS, "all": 1}),
    # the adapter's base as it names it, and the base_model every card names
    "peft base": (lambda c: c["release"].update(peft_base_model="someone/base"),
                  {"release_peft": 1, **CARDS, "all": 1}),
    # no GGUF file, no gguf mode: the table without its predictions, and the two cards left
    "no gguf": (lambda c: c["release"].update(gguf=[]), {"evaluate": 1, "publish": 2, "all": 1}),
}


def planned_jobs(workdir, configfile) -> dict[str, int]:
    """Planned jobs per rule, as rule[mode] where the job has a mode wildcard."""
    out = snakemake(workdir, "-n", "--", "all", configfile=configfile).stdout
    if "Nothing to be done" in out:
        return {}
    jobs: Counter = Counter()
    for block in re.split(r"^(?=(?:local)?rule \w+:)", out, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        mode = re.search(r"^\s+wildcards: mode=(\w+)", block, re.M)
        jobs[rule + (f"[{mode.group(1)}]" if mode else "")] += 1
    return dict(jobs)


def test_no_change_plans_nothing(tiny_run):
    assert planned_jobs(tiny_run, REPO / "config.yaml") == {}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_reruns_exactly_what_it_affects(tiny_run, tmp_path, change):
    edit, expected = CHANGES[change]
    assert planned_jobs(tiny_run, edited_config(tmp_path, edit)) == expected
