"""What the tests share besides fixtures: paths, running the project's commands as a user does,
and processes that never outlive their test.

Every process a test starts runs in a session (process group) of its own and is stopped with
all its children when the test is done with it, whatever the outcome: `run` on a timeout or an
error, `started` when its block ends. conftest.py checks, once all tests have run, that no
port is left listening.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from vicuna.rehearsal import clone  # noqa: F401 (a fresh clone's files, for the tests too)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
LLAMA_TOKENIZER = SHARED / "fixtures" / "llama-tokenizer" / "tokenizer.model"
BIN = Path(sys.executable).parent
# Debian's Chromium, headless, with nothing that would reach beyond this machine.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def env() -> dict[str, str]:
    """The environment a user gets from `make`: the venv's bin first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


# --- Processes ------------------------------------------------------------------------------

def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop `proc` and every process of its group (its children: `make`'s, a shell's, the jobs
    Snakemake starts): SIGTERM, then SIGKILL after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the group is gone
            pass
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:  # the leader is gone: make sure its children are too
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def started(cmd, **popen_args) -> Iterator[subprocess.Popen]:
    """A server or long command for the block's duration, in a process group of its own."""
    proc = subprocess.Popen(cmd, start_new_session=True, **popen_args)
    try:
        yield proc
    finally:
        stop_group(proc)


def run(cmd, *, timeout: float | None = None, **popen_args) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True), whose whole process group is
    stopped if it times out or the test is interrupted (subprocess.run kills the child only)."""
    with started(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 **popen_args) as proc:
        stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def listening_ports() -> dict[int, int]:
    """TCP ports listening on this machine (IPv4 and IPv6), port -> socket inode."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                ports[int(fields[1].rsplit(":", 1)[1], 16)] = int(fields[9])
    return ports


def socket_owners(inodes: set[int]) -> dict[int, str]:
    """Socket inode -> "pid command" of the process holding it (where /proc lets us see)."""
    owners = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    owners[int(target[8:-1])] = f"{proc.name} {cmdline[:120]}"
        except OSError:
            continue
    return owners


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- The project's commands, as a user runs them -------------------------------------------------

def edited_config(tmp_path: Path, edit) -> Path:
    """The default config.yaml with `edit(config)` applied, written to tmp_path."""
    config = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text()))
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, configfile: Path | None = None,
              check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Snakemake as a user runs it: from the root of a clone (`workdir`), with its config.yaml
    unless `configfile` replaces it."""
    cmd = [str(BIN / "snakemake"), *([f"--configfile={configfile}"] if configfile else []), *args]
    result = run(cmd, cwd=workdir, env=env(), timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def run_script(name: str, *args: str, cwd: Path | None = None, check: bool = True,
               timeout: int = 900) -> subprocess.CompletedProcess:
    result = run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd, env=env(),
                 timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result
