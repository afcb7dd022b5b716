"""The tiny default end to end through the SLURM profile (profiles/slurm, the one users run,
sized down on the command line for this small node), on the single-node test cluster: the
training job asks for a GPU, the others do not, and the predictions are a local run's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import BIN, REPO, env
from slurm_cluster import sacct_job

pytestmark = pytest.mark.workflow

LOCAL_RULES = {"all", "finetune_config", "translate_opts"}
# profiles/slurm asks 64 GB and 8 CPUs for training: this node has 24 GB and 2 CPUs (seen:
# --set-resources on the command line replaces the profile's entry, so gpu=1 is restated). The same
# thread counts as profiles/local make the same weights, bit for bit.
SMALL_NODE = [
    "--default-resources", "slurm_partition=main", "mem_mb=500", "runtime=30",
    "--set-resources", "finetune:gpu=1", "finetune:mem_mb=1000", "finetune:cpus_per_gpu=2",
    "finetune:runtime=30",
    "--set-threads", "finetune=2", "pretrain_base=2",
    "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
]


def job_ids(workdir: Path) -> dict[str, list[str]]:
    """SLURM job ids by rule, from the plugin's per-job logs (.snakemake/slurm_logs/rule_X/)."""
    ids: dict[str, list[str]] = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule = next(p for p in log.relative_to(workdir).parts if p.startswith("rule_"))[5:]
        ids.setdefault(rule, []).append(log.stem)
    return ids


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("slurm_run")
    cmd = ["timeout", "-k", "10", "1500", str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"),
           "-d", str(workdir), f"--configfile={REPO / 'config.yaml'}",
           "--profile", str(REPO / "profiles" / "slurm"), *SMALL_NODE, "--", "all"]
    # cwd: the plugin writes .snakemake/slurm_logs under the current directory.
    proc = subprocess.run(cmd, cwd=workdir, env=env(), capture_output=True, text=True)
    assert proc.returncode != 124, f"timed out:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"failed:\n{proc.stdout[-3000:]}{proc.stderr[-5000:]}"
    return workdir


def test_training_alone_asks_for_a_gpu(slurm_run):
    ids = job_ids(slurm_run)
    assert "finetune" in ids and "pretrain_base" in ids and "simple_inference" in ids, ids
    assert not LOCAL_RULES & set(ids), "light rules must run on the submit host"
    for rule, jobs in ids.items():
        for job in jobs:
            tres = sacct_job(job)["AllocTRES"]
            assert ("gres/gpu=1" in tres) == (rule == "finetune"), (rule, tres)


def test_predictions_equal_a_local_run(slurm_run, tiny_run):
    for mode in ["py", "ct2"]:
        name = f"outputs/predictions_{mode}.txt"
        assert (slurm_run / name).read_text() == (tiny_run / name).read_text(), mode
