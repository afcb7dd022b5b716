"""Smoke test of profiles/slurm-test on a real SLURM cluster.

Bring the single-node test cluster up first (as root): ``bash tests/slurm/cluster.sh up``.
Without ``sbatch``, or when the cluster does not answer, the test is skipped.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "tests" / "slurm" / "smoke" / "Snakefile"
PROFILE = REPO / "profiles" / "slurm-test"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CPU_RULES = ("prepare", "report")


def run(*cmd: str, timeout: float = 20) -> str:
    """Run a command and return its stdout; raise on failure or timeout."""
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout


def cluster_missing() -> str | None:
    """Why the test cannot run here, or None if a cluster with partition `main` answers."""
    if shutil.which("sbatch") is None:
        return "no sbatch: start the test cluster with `bash tests/slurm/cluster.sh up`"
    try:
        partitions = run("sinfo", "-h", "-p", "main", "-o", "%P")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        return f"SLURM does not answer `sinfo` ({err}): `bash tests/slurm/cluster.sh up`"
    if not partitions.strip():
        return "no partition `main`: this test targets tests/slurm/cluster.sh's cluster"
    return None


def read_record(path: Path) -> dict[str, str]:
    """A job's record, written by the toy workflow: rule, slurm_job_id, cuda_visible_devices."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def sacct_job(job_id: str) -> dict[str, str]:
    """Accounting of a job's allocation: AllocTRES, Account, Partition."""
    fields = ("AllocTRES", "Account", "Partition")
    out = run("sacct", "-j", job_id, "-X", "-n", "-P", "-o", ",".join(fields))
    return dict(zip(fields, out.strip().splitlines()[0].split("|"), strict=True))


def scontrol_job(job_id: str) -> str:
    """`scontrol show job` (kept MinJobAge seconds after the job ends)."""
    return run("scontrol", "show", "job", "-o", job_id)


@pytest.fixture(scope="module")
def cluster():
    reason = cluster_missing()
    if reason:
        pytest.skip(reason)
    # The plugin polls job states with sacct: without accounting Snakemake waits forever.
    try:
        run("sacct", "-n", "-X", "-S", "now-1hour")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        pytest.fail(f"sacct does not answer, the SLURM executor would hang: {err}")


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
