"""A finetune killed (the job, or Snakemake itself) or interrupted (Ctrl-C in a terminal) keeps
its TensorBoard curves, and the resumed run continues them, each step once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest
from helpers import BIN, Terminal, clone, env, scalars

PROGRESS = ("progress/xent", "progress/ppl", "progress/lr")




FINETUNED = "runs/llama-tiny/finetuned_llama-tiny"


def reports(log: str) -> dict[int, tuple[int, ...]]:
    """OpenNMT-py's reports by step: the sentences and the batch sizes of the steps since the
    last report (`sents:     320; bsz:  984/ 984/16`): what data the training read."""
    return {int(m[1]): tuple(map(int, m.groups()[1:])) for m in re.finditer(
        r"Step (\d+)/ *\d+;.*?sents: +(\d+); bsz: +(\d+)/ *(\d+)/ *(\d+);", log)}


def snakemake_cmd(target: str) -> list[str]:
    return [str(BIN / "snakemake"), "--profile", "profiles/local", "--", target]


# (SIGTERM to the job alone: test_finetune_resume.py; a job killed alone then resumes as after
# Ctrl-C, which stops the job first)
@pytest.mark.parametrize("killed", ["snakemake", "ctrl-c"])
def test_killed_finetune_keeps_its_curves_and_the_resumed_run_continues_them(
        tiny_run, tmp_path, killed):
    """The training is stopped after its step 200 checkpoint and a report past it: by Ctrl-C,
    typed in the terminal Snakemake runs in (the job stops, Snakemake sees it fail and removes
    its outputs; the console says where a rerun resumes, and none of the log's warnings), or
    killed with Snakemake (a lost node; the next run removes the outputs before it starts
    again). The rerun resumes from step 200 and the event files hold each step once, from the
    first report to the last; after a lost node the whole graph then runs on to the
    predictions."""
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)  # keeps mtimes: upstream stays up to date
    clone(work)  # this tree's code, should tiny_run be an older run (VICUNA_TINY_RUN)
    shutil.rmtree(work / FINETUNED)
    (work / "runs/llama-tiny/logs/finetune.log").unlink(missing_ok=True)
    if killed == "ctrl-c":
        terminal = Terminal(snakemake_cmd("training_curves"), cwd=work, env=env())
        first = terminal.proc
    else:
        first = subprocess.Popen(snakemake_cmd("training_curves"), cwd=work, env=env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
    log = work / "runs/llama-tiny/logs/finetune.log"
    deadline = time.monotonic() + 600
    while not (log.is_file() and "Step 240/" in log.read_text()):
        assert first.poll() is None, (first.stdout.read() if first.stdout else terminal.output)[-3000:]
        assert time.monotonic() < deadline, "no report after step 240 within 10 minutes"
        time.sleep(0.2)
    assert (work / f"{FINETUNED}/llama-tiny-vicuna-onmt_step_200.pt").is_file()
    if killed == "snakemake":
        os.killpg(first.pid, signal.SIGKILL)
    else:
        terminal.interrupt()
    if killed == "ctrl-c":
        returncode, out = terminal.wait(timeout=120), terminal.output
    else:
        out, returncode = first.communicate(timeout=120)[0], first.returncode
    assert returncode != 0
    assert not (work / f"{FINETUNED}/llama-tiny-vicuna-onmt_step_400.pt").exists(), "killed too late"
    if killed == "ctrl-c":
        # the console: where the training started and where a rerun goes on; the log's warnings
        # and the interrupted libraries' tracebacks stay in the log
        stopped = (f"finetune: stopped (Ctrl-C); the newest complete checkpoint is step 200 "
                   f"({FINETUNED}/llama-tiny-vicuna-onmt_step_200.pt): run the same command "
                   f"again to resume from there")
        assert "finetune: training from step 0 to 800" in out, out[-3000:]
        assert f"  {stopped}\n    runs/llama-tiny/logs/finetune.log" in out, out[-3000:]
        assert out.count("stopped (Ctrl-C)") == 1, out[-3000:]
        assert "Warning" not in out and "Traceback" not in out, out[-3000:]
        assert log.read_text().rstrip().endswith(stopped)
    else:
        subprocess.run([*snakemake_cmd("training_curves")[:-2], "--unlock"], cwd=work, env=env(),
                       check=True, capture_output=True)
    logs = work / f"{FINETUNED}/logs"
    before = scalars(logs)
    assert max(before["progress/xent"]) >= 240  # the killed run's reports reached the disk
    assert not (logs / "history.json").exists()

    # Killed with Snakemake (a lost node), the rerun is `make run`'s: the whole graph goes on.
    target = "all" if killed == "snakemake" else "training_curves"
    second = subprocess.run(snakemake_cmd(target), cwd=work, env=env(),
                            capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # on the console, not only in the log
    assert "resume: resuming from step 200 of 800" in second.stdout + second.stderr
    after = scalars(logs)
    assert set(after) == set(before)  # every tag goes on
    for tag, steps in after.items():
        assert not [s for s, n in Counter(steps).items() if n > 1], (tag, "logged twice")
        expected = range(20, 801, 20) if tag.startswith("progress/") else range(200, 801, 200)
        assert steps == list(expected), (tag, steps)
    train_log = log.read_text()
    assert "resume: resuming from step 200" in train_log
    # the data goes on where the killed run left it: from step 220 on, each report's sentences
    # and tokens are those of the uninterrupted run (the tiny default's own, same seed)
    uninterrupted = reports((tiny_run / "runs/llama-tiny/logs/finetune.log").read_text())
    resumed = reports(train_log)
    assert sorted(resumed) == list(range(220, 801, 20))
    assert resumed == {step: counts for step, counts in uninterrupted.items() if step > 200}
    assert "resume: skipping the 200 batches of steps 1-200" in train_log
    assert not list((work / FINETUNED).glob("*_resume.pt"))  # finished: the base-sized file goes
    assert "resume: removed" in train_log
    assert "values logged after step 200 by the killed run" in train_log
    history = json.loads((logs / "history.json").read_text())
    assert [(r["first_step"], r["last_step"]) for r in history["runs"]] == [(20, 200), (220, 800)]
    assert (work / f"{FINETUNED}/training_curves.png").read_bytes()[:4] == b"\x89PNG"
    curves_log = (work / "runs/llama-tiny/logs/training_curves.log").read_text()
    assert "wrote" in curves_log and "valid/xent" in curves_log
    if killed == "snakemake":
        assert "Step 220/" in train_log and "Step 20/" not in train_log  # went on, not over
        n = len((work / "synthetic/input_examples.txt").read_text().splitlines())
        for mode in ("py", "ct2", "gguf"):  # one answer per prompt
            answers = (work / f"runs/llama-tiny/outputs/predictions_{mode}.txt").read_text()
            assert len(answers.splitlines()) == n, mode
