"""The console's line per failed job (vicuna/failed_jobs.py), read from a real Snakemake log."""

from __future__ import annotations

import subprocess
import sys

from helpers import BIN, REPO, env

from vicuna import failed_jobs

SNAKEFILE = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from vicuna import failed_jobs

rule all:
    input: "a.txt", "b.txt", "c.txt", "d.txt"

rule script_error:  # the project's scripts: a warning, then `error: ...`, then more output
    output: "a.txt"
    log: "logs/a.log"
    shell: "(echo 'FutureWarning: not yours'; echo 'error: x.yaml: train_steps: bad';"
           " echo 'progress 100%'; exit 2) > {{log}} 2>&1"

rule traceback:
    output: "b.txt"
    log: "logs/b.log"
    shell: "{sys.executable} -c 'raise ValueError(\\"boom\\")' > {{log}} 2>&1"

rule silent:
    output: "c.txt"
    log: "logs/c.log"
    shell: "touch {{log}}; exit 1"

rule fine:
    output: "d.txt"
    log: "logs/d.log"
    shell: "touch {{output}} {{log}}"

onerror:
    print(failed_jobs.summary(log), file=sys.stderr)
"""


def test_each_failed_job_gets_the_line_of_its_log_that_says_why(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    result = subprocess.run([str(BIN / "snakemake"), "-c1", "-k"], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert ("Why (the end of each failed job's log; the whole log is named under it):\n"
            "  script_error: error: x.yaml: train_steps: bad\n"
            "    logs/a.log\n") in result.stderr
    assert "  traceback: ValueError: boom\n    logs/b.log\n" in result.stderr
    assert "  silent: (its log is empty)\n    logs/c.log" in result.stderr
    assert "fine:" not in result.stderr.split("Why (")[1]
    assert "\nFutureWarning: not yours\n" not in result.stderr  # logs are not printed whole


def test_a_log_that_is_gone_or_a_run_without_failures(tmp_path):
    assert failed_jobs.reason(tmp_path / "missing.log") is None
    log = tmp_path / "snakemake.log"
    log.write_text("Building DAG of jobs...\nFinished job 0.\n1 of 1 steps (100%) done\n")
    assert failed_jobs.summary(str(log)) == ""
    assert failed_jobs.summary([str(tmp_path / "none.log")]) == ""
