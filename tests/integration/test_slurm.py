"""Smoke test of profiles/slurm-test on a real SLURM cluster.

Bring the single-node test cluster up first (as root): ``bash tests/slurm/cluster.sh up``.
Without ``sbatch``, or when the cluster does not answer, the test is skipped.
"""

import os
import subprocess
import sys
from pathlib import Path

from slurm_cluster import sacct_job, scontrol_job

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "tests" / "slurm" / "smoke" / "Snakefile"
PROFILE = REPO / "profiles" / "slurm-test"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CPU_RULES = ("prepare", "report")


def read_record(path: Path) -> dict[str, str]:
    """A job's record, written by the toy workflow: rule, slurm_job_id, cuda_visible_devices."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_profile_runs_gpu_and_cpu_jobs(cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    snakemake = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--profile", str(PROFILE)]
    cmd = ["timeout", "-k", "10", "600", *snakemake, "-d", str(tmp_path)]
    # cwd: the plugin puts .snakemake/slurm_logs under the current directory.
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 124, f"snakemake timed out after 600 s:\n{log[-4000:]}"
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode}):\n{log[-4000:]}"

    records = {rule: read_record(tmp_path / f"{rule}.txt") for rule in ("finetune", *CPU_RULES)}
    job_ids = {rule: rec["slurm_job_id"] for rule, rec in records.items()}
    assert all(job_ids.values()), f"a job did not run under SLURM: {records}"
    assert len(set(job_ids.values())) == 3, f"expected one SLURM job per rule: {job_ids}"

    gpu = sacct_job(job_ids["finetune"])
    assert records["finetune"]["cuda_visible_devices"] != "", records["finetune"]
    assert "gres/gpu=1" in gpu["AllocTRES"], gpu
    assert (gpu["Partition"], gpu["Account"]) == ("main", "vicuna"), gpu
    # slurm-requeue: true in the profile -> sbatch --requeue.
    assert "Requeue=1" in scontrol_job(job_ids["finetune"])

    for rule in CPU_RULES:
        acct = sacct_job(job_ids[rule])
        assert records[rule]["cuda_visible_devices"] == "", records[rule]
        assert "gres/gpu" not in acct["AllocTRES"], (rule, acct)
