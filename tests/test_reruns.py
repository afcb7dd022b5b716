"""Each config key reaches only the rules it affects: after a change, `snakemake -n` plans
exactly the stale steps."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, edited_config, snakemake

pytestmark = pytest.mark.workflow

INFERENCE = {"translate_opts": 2, "simple_inference": 2, "evaluate": 1, "all": 1}
TRAINING = {"finetune_config": 1, "finetune": 1, "finetune_samples": 1, "merge_lora": 1,
            "training_curves": 1, "release_ct2": 1, **INFERENCE}
DATA = {"flatten_dataset": 4, "data_report": 1, **TRAINING}

CHANGES = {
    "decoding": (lambda c: c["inference"].update(max_length=32), INFERENCE),
    "sampling": (lambda c: c["inference"].update(random_sampling_temp=0.7), INFERENCE),
    "lora": (lambda c: c["train"]["lora"].update(rank=4), TRAINING),
    "optimizer": (lambda c: c["train"].update(learning_rate=1e-3), TRAINING),
    "data": (lambda c: c["data"].update(on_error="skip"), DATA),
    "release": (lambda c: c["release"].update(quantization="int8"),
                {"release_ct2": 1, "translate_opts": 1, "simple_inference": 1, "evaluate": 1, "all": 1}),
}


def planned_jobs(workdir, configfile) -> dict[str, int]:
    out = snakemake(workdir, "-n", "--", "all", configfile=configfile).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_no_change_plans_nothing(tiny_run):
    assert planned_jobs(tiny_run, REPO / "config.yaml") == {}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_reruns_exactly_what_it_affects(tiny_run, tmp_path, change):
    edit, expected = CHANGES[change]
    assert planned_jobs(tiny_run, edited_config(tmp_path, edit)) == expected
