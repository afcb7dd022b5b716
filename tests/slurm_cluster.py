"""The single-node test cluster of tests/slurm/cluster.sh, as pytest sees it.

`make test` brings it up as root (CI); elsewhere, without `sbatch` or an answering cluster,
the tests that need it are skipped, saying why.
"""

import shutil
import subprocess

import pytest


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


