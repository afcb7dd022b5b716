"""What a finetuning says besides OpenNMT-py's reports: on the console, a line when it starts
(from step 0, or resuming from a step checkpoint); at the end of its log, a line when it is
stopped (Ctrl-C, SLURM's or Snakemake's SIGTERM) that names the checkpoint a rerun goes on from,
which the Snakefile's onerror prints (vicuna.failed_jobs).

The job's stdout and stderr go to its log (OpenNMT-py's reports, every library's warnings); the
rule hands the console to the script as another file descriptor (`3>&2`), so the start line
reaches the user and nothing else does.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vicuna.train import resume


class Console:
    """Writes a line to the log (stdout) and, where given, to the console's descriptor."""

    def __init__(self, fd: int | None = None) -> None:
        self.stream = None
        if fd is not None:
            try:
                self.stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8")
            except OSError:  # not open (the script run by hand without 3>&2): the log only
                self.stream = None

    def say(self, line: str) -> None:
        print(line, flush=True)
        if self.stream is not None:
            try:
                self.stream.write(line + "\n")
            except OSError:  # the console went away (a closed terminal): the log has it
                self.stream = None


class Stopped(KeyboardInterrupt):
    """Training was asked to stop by a signal (a KeyboardInterrupt, so every library's cleanup
    that handles Ctrl-C handles it too)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (SLURM's preemption and time limit, Snakemake cancelling a job) raises Stopped,
    as Ctrl-C's SIGINT raises KeyboardInterrupt, so both end the same way."""
    def stop(signum: int, _frame) -> None:
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped_line(save_model: str | Path, why: str) -> str:
    """The line for a stopped training: the checkpoint a rerun resumes from, or that it starts
    over (no complete step checkpoint yet)."""
    found = resume.newest_complete(save_model)
    if found is None:
        return (f"finetune: stopped ({why}) before its first step checkpoint: "
                f"a rerun starts from step 0")
    step = found[0]
    return (f"finetune: stopped ({why}); the newest complete checkpoint is step {step} "
            f"({save_model}_step_{step}.pt): run the same command again to resume from there")


def exit_code(stop: KeyboardInterrupt) -> int:
    """The shell's convention for death by a signal: 128 + its number."""
    return 128 + (stop.signum if isinstance(stop, Stopped) else signal.SIGINT)


def console_fd(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        sys.exit(f"error: -console_fd {value}: expected a file descriptor number")
