"""A finetuning job killed after its first step checkpoint goes on from that step."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, REPO, env

from vicuna import resume

pytestmark = pytest.mark.workflow

SAVE_MODEL = "finetuned_llama-tiny/llama-tiny-vicuna-onmt"


def test_a_truncated_checkpoint_is_never_picked(tiny_run, tmp_path):
    shutil.copy(tiny_run / f"{SAVE_MODEL}_step_200.pt", tmp_path / "m_step_200.pt")
    whole = (tiny_run / f"{SAVE_MODEL}_step_400.pt").read_bytes()
    (tmp_path / "m_step_400.pt").write_bytes(whole[: len(whole) // 2])  # killed while saving
    step, ck = resume.newest_complete(tmp_path / "m")
    assert step == 200 and ck["optim"]["training_step"] > 200 - 2


def snakemake_cmd(workdir: Path) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            f"--configfile={REPO / 'config.yaml'}", "--profile", str(REPO / "profiles/local"),
            "--", "all"]


def test_killed_training_resumes_from_its_step_checkpoint(tiny_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)  # keeps mtimes: upstream stays up to date
    shutil.rmtree(work / "finetuned_llama-tiny")
    first = subprocess.Popen(snakemake_cmd(work), env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = work / f"{SAVE_MODEL}_step_200.pt"
    deadline = time.monotonic() + 600
    while not checkpoint.is_file():
        assert first.poll() is None, "the workflow ended before its first step checkpoint"
        assert time.monotonic() < deadline, "no step checkpoint after 10 minutes"
        time.sleep(0.5)
    time.sleep(2)  # let the save finish; a truncated file would be skipped anyway
    os.killpg(first.pid, signal.SIGKILL)  # as a node that is lost: no clean-up at all
    first.wait()
    assert not (work / f"{SAVE_MODEL}_step_400.pt").exists(), "killed too late to test resuming"

    # A killed Snakemake leaves its lock behind, as after a lost node.
    subprocess.run([*snakemake_cmd(work)[:-2], "--unlock"], env=env(), check=True,
                   capture_output=True)
    second = subprocess.run(snakemake_cmd(work), env=env(), capture_output=True, text=True,
                            timeout=1200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = (work / "logs/finetune.log").read_text()
    assert "resume: resuming from step 200" in log
    assert "Step 220/" in log and "Step 20/" not in log  # went on, did not start over
    assert (work / "outputs/predictions_py.txt").is_file()
    assert (work / "outputs/predictions_ct2.txt").is_file()
