"""After a failed run, one line per failed job on the console: the rule, the line of its log that
says why (an `error:` line of the project's scripts, an exception's last line, the finetuning's
"stopped ... resume from step N"), and the log's path. The Snakefile's `onerror` calls it with
Snakemake's own log of the run.

The profiles leave `show-failed-logs` off: a job's log keeps every library's warnings and
progress line, which are not the user's to act on; printing it whole buried the one line that is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Snakemake's block for a failed job: "Error in rule NAME:" then indented fields, one of which
# is "log: PATH[, PATH...] (check log file(s) for error details)".
_ERROR = re.compile(r"^Error in rule (\S+?):\s*$")
_LOG = re.compile(r"^\s+log: (.+?)(?: \(check log file\(s\) for error details\))?\s*$")


@dataclass
class FailedJob:
    rule: str
    logs: list[str]


def failed_jobs(snakemake_log: str | Path) -> list[FailedJob]:
    """The failed jobs of a run, in the order Snakemake reported them (each rule once: a retry's
    failure is the same job's)."""
    found: dict[str, FailedJob] = {}
    current: FailedJob | None = None
    for line in Path(snakemake_log).read_text(encoding="utf-8", errors="replace").splitlines():
        if m := _ERROR.match(line):
            current = found.setdefault(m.group(1), FailedJob(m.group(1), []))
        elif current is not None and (m := _LOG.match(line)):
            current.logs = [p.strip() for p in m.group(1).split(",") if p.strip()]
            current = None
        elif current is not None and line and not line[0].isspace():
            current = None  # the block ended without a log
    return list(found.values())


def reason(log: str | Path) -> str | None:
    """The line of a job's log that says why it failed: its last `error:` line, else its last
    line that is not blank (a traceback ends with the exception), None for a missing log."""
    try:
        lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    lines = [line.strip() for line in lines if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "finetune: stopped"))]
    if errors:
        return errors[-1]
    return lines[-1] if lines else None


def summary(snakemake_logs: list[str] | str | Path) -> str:
    """The lines to print: each failed job, why, and where its whole log is."""
    if isinstance(snakemake_logs, (str, Path)):
        snakemake_logs = [snakemake_logs]
    jobs = [job for log in snakemake_logs if Path(log).is_file() for job in failed_jobs(log)]
    if not jobs:
        return ""
    out = ["Why (the end of each failed job's log; the whole log is named under it):"]
    for job in jobs:
        why = next((r for log in job.logs if (r := reason(log))), None)
        why = (why or "(its log is empty)").removeprefix(f"{job.rule}: ")  # finetune: stopped
        out.append(f"  {job.rule}: {why}")
        out.extend(f"    {log}" for log in job.logs)
    return "\n".join(out)
