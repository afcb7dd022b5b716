"""Resuming through Snakemake on the tiny run: a truncated step checkpoint is never picked,
changed data starts over, a corpus changed in place plans retraining. (A killed finetune that
resumes, curves and all, is test_finetune_curves.py.)"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from helpers import BIN, clone, env, train_pids

from vicuna.train import resume

SAVE_MODEL = "runs/llama-tiny/finetuned_llama-tiny/llama-tiny-vicuna-onmt"


def test_a_truncated_checkpoint_is_never_picked(tiny_run, tmp_path):
    shutil.copy(tiny_run / f"{SAVE_MODEL}_step_200.pt", tmp_path / "m_step_200.pt")
    whole = (tiny_run / f"{SAVE_MODEL}_step_400.pt").read_bytes()
    (tmp_path / "m_step_400.pt").write_bytes(whole[: len(whole) // 2])  # killed while saving
    step, ck = resume.newest_complete(tmp_path / "m")
    assert step == 200 and ck["optim"]["training_step"] > 200 - 2


def snakemake_cmd() -> list[str]:
    """`make run`'s command, run from the root of the run's clone."""
    return [str(BIN / "snakemake"), "--profile", "profiles/local", "--", "all"]


def killed_after_first_checkpoint(tiny_run: Path, work: Path) -> None:
    """A copy of the tiny run whose finetuning is killed (SIGKILL, as a lost node) just after
    its first step checkpoint, its Snakemake lock left behind and then lifted."""
    shutil.copytree(tiny_run, work, symlinks=True)  # keeps mtimes: upstream stays up to date
    shutil.rmtree(work / "runs/llama-tiny/finetuned_llama-tiny")
    first = subprocess.Popen(snakemake_cmd(), cwd=work, env=env(), stdout=subprocess.DEVNULL,
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
    subprocess.run([*snakemake_cmd()[:-2], "--unlock"], cwd=work, env=env(), check=True,
                   capture_output=True)


def test_training_on_changed_data_does_not_resume(tiny_run, tmp_path):
    """The corpus changes between the kill and the rerun (same config): the rerun trains
    from step 0 on the new data, and its log says why."""
    work = tmp_path / "run"
    killed_after_first_checkpoint(tiny_run, work)
    corpus = work / "runs/llama-tiny/dataAI/alpaca_clean.txt"
    corpus.write_text("".join(corpus.read_text().splitlines(keepends=True)[:-100]))
    second = subprocess.run([*snakemake_cmd()[:-1], "finetune"], cwd=work, env=env(),
                            capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = (work / "runs/llama-tiny/logs/finetune.log").read_text()
    assert "runs/llama-tiny/dataAI/alpaca_clean.txt changed since the step checkpoints were written" in log
    assert "resuming from step" not in log and "Step 20/" in log


def test_a_corpus_changed_in_place_plans_retraining(tiny_run, tmp_path):
    """Every file the finetuning reads is one of its inputs: new content in a corpus, with the
    config unchanged, plans the finetuning again (and what follows from it)."""
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    corpus = work / "runs/llama-tiny/dataAI/sharegpt.txt"
    corpus.write_text(corpus.read_text() + corpus.read_text().splitlines(keepends=True)[0])
    plan = subprocess.run([*snakemake_cmd()[:-2], "--dry-run", "all"], cwd=work, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    for rule in ("finetune", "finetune_samples", "merge_lora", "release_ct2", "simple_inference"):
        assert re.search(rf"^{rule}\s+\d+$", plan.stdout, re.M), (rule, plan.stdout[-3000:])
    assert not re.search(r"^(convert_llama|pretrain_base|flatten_dataset)\s+\d+$", plan.stdout, re.M)


def test_a_training_sent_sigterm_says_where_a_rerun_resumes(tiny_run, tmp_path):
    """SLURM's preemption and time limit, and `scancel`, send the job SIGTERM: the training stops
    as on Ctrl-C, exits as the signal would (143), and the last line of its log, which the
    console shows, names the checkpoint a rerun resumes from."""
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    clone(work)  # this tree's code, should tiny_run be an older run (VICUNA_TINY_RUN)
    shutil.rmtree(work / "runs/llama-tiny/finetuned_llama-tiny")
    (work / "runs/llama-tiny/logs/finetune.log").unlink(missing_ok=True)
    proc = subprocess.Popen([*snakemake_cmd()[:-1], "finetune"], cwd=work, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    checkpoint = work / f"{SAVE_MODEL}_step_200.pt"
    deadline = time.monotonic() + 600
    while not checkpoint.is_file():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no step checkpoint after 10 minutes"
        time.sleep(0.5)
    time.sleep(2)  # the save is done
    for pid in train_pids(work):
        os.kill(pid, signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    assert not (work / f"{SAVE_MODEL}_step_400.pt").exists(), "stopped too late to test it"
    stopped = (f"finetune: stopped (SIGTERM); the newest complete checkpoint is step 200 "
               f"({SAVE_MODEL}_step_200.pt): run the same command again to resume from there")
    log = (work / "runs/llama-tiny/logs/finetune.log").read_text()
    assert log.rstrip().splitlines()[-1] == stopped
    assert "Traceback" not in log
    assert f"  {stopped}\n    runs/llama-tiny/logs/finetune.log" in out, out[-3000:]
    assert "non-zero exit status 143" in out
