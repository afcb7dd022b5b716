"""What the tests share besides fixtures: paths, running the project's commands as a user does,
and processes that never outlive their test.

Every process a test starts runs in a session (process group) of its own and is stopped with
all its children when the test is done with it, whatever the outcome: `run` on a timeout or an
error, `started` when its block ends. conftest.py checks, once all tests have run, that no
port is left listening.
"""

from __future__ import annotations

import copy
import json
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from vicuna.testing.rehearsal import clone  # noqa: F401 (a fresh clone's files, for the tests too)

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


class Terminal:
    """A command run as in a terminal window: its own session with a pseudo-terminal as its
    controlling terminal, so typing Ctrl-C (`interrupt`) sends SIGINT to its foreground process
    group (make, Snakemake, the job's shell and script), as a user's keyboard does."""

    def __init__(self, cmd, **popen_args) -> None:
        import pty
        import threading

        self.master, slave = pty.openpty()

        def controlling_terminal() -> None:
            import fcntl
            import termios

            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=controlling_terminal, **popen_args)
        os.close(slave)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace").replace("\r\n", "\n")

    def interrupt(self) -> None:
        os.write(self.master, b"\x03")  # what Ctrl-C types

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            stop_group(self.proc)
        self.reader.join(timeout=10)
        os.close(self.master)
        return code


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


def serve_chatbot(options: Path, log: Path, *flags: str, mode: str = "ct2") -> Iterator[str]:
    """scripts/chatbot.py (ct2 mode unless `mode`) on a free port until the generator is
    closed; yields its URL once the page answers (a generator: `yield from` it in a fixture,
    or loop over it)."""
    import time
    import urllib.request

    port = free_port()
    cmd = [sys.executable, str(REPO / "scripts" / "chatbot.py"), "-inference_config_file",
           str(options), "-inference_mode", mode, "-server_port", str(port), *flags]
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as out, started(cmd, stdout=out, stderr=subprocess.STDOUT) as proc:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"chatbot.py exited with {proc.returncode}:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"chatbot.py did not answer on {url}:\n{log.read_text()}"
            time.sleep(0.5)
        yield url


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


def call_script(name: str, *args: str) -> None:
    """A script run as its command line runs it, in this process (for fixtures: no second start
    of torch); a refusal raises AssertionError with the script's message."""
    argv = sys.argv
    sys.argv = [str(REPO / "scripts" / name), *map(str, args)]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise AssertionError(f"{name} failed: {e.code}") from None
    finally:
        sys.argv = argv


def fails(script: str, *args, culprit: str | Path, cwd: Path | None = None) -> str:
    """Run a script that must refuse: exit != 0, one `error:` line naming `culprit`."""
    result = run_script(script, *map(str, args), check=False, cwd=cwd)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(culprit) in last, result.stderr
    return last


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# The pages whose commands the tests run as written: the README and docs/.
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def page_commands(page: Path, prefix: str = "") -> list[str]:
    """The command lines of a page's ```bash blocks that start with `prefix` (comments cut)."""
    blocks = re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and line.startswith(prefix)]


def readme_commands(prefix: str) -> list[str]:
    """The command lines of the README's ```bash blocks that start with `prefix`."""
    return page_commands(REPO / "README.md", prefix)


SEVEN_B = next(c for c in readme_commands("snakemake ") if "llama7b-vicuna.yaml" in c)


def make_lora(base: dict, *, rank: int = 2, bad_shape: bool = False, vocab_extra: int = 0) -> dict:
    """A LoRA step checkpoint as OpenNMT-py saves one: lora_A [r, in], lora_B [out, r] only."""
    import torch

    opt = copy.deepcopy(base["opt"])
    opt.lora_layers, opt.lora_rank, opt.lora_alpha = ["linear_query"], rank, 2 * rank
    torch.manual_seed(0)
    model = {}
    for i in range(opt.dec_layers):
        prefix = f"decoder.transformer_layers.{i}.self_attn.linear_query."
        out_dim, in_dim = base["model"][prefix + "weight"].shape
        model[prefix + "lora_A"] = torch.randn(rank, in_dim)
        model[prefix + "lora_B"] = torch.randn(out_dim + (1 if bad_shape else 0), rank)
    vocab = copy.deepcopy(base["vocab"])
    for key in ("src", "tgt"):
        vocab[key] = vocab[key] + [f"extra{j}" for j in range(vocab_extra)]
    return {"model": model, "generator": None, "vocab": vocab, "opt": opt, "optim": None}


# bad_files' kinds (conftest) -> words of the one-line message each reader gives
CHECKPOINT_FAULTS = {
    "missing": "no such file",
    "empty": "empty file",
    "truncated": "not a torch checkpoint",
    "text": "not a torch checkpoint",
    "meta": "not an OpenNMT-py checkpoint (no model, vocab, opt)",
    "lora": "merge it into its base first with lora_weights.py",
    "pickle_list": "not an OpenNMT-py checkpoint",
}


# --- Data and curves, as the tests of both tiers read them ----------------------------------

NL = "｟newline｠"  # a newline as corpus lines store it


def flatten(tmp_path, fmt, records, *extra, check=True):
    """flatten_dataset.py on `records` written as JSON: (its result, the corpus it wrote)."""
    src = tmp_path / "in.json"
    src.write_text(json.dumps(records), encoding="utf-8")
    out = tmp_path / "out.txt"
    result = run_script("flatten_dataset.py", "--format", fmt, *extra, str(src), str(out),
                        check=check)
    return result, out


def scalars(log_dir: Path) -> dict[str, list[int]]:
    """Every tag's steps over all event files under log_dir, sorted (a step logged twice shows
    twice), read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for path in log_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            steps.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
    return {tag: sorted(values) for tag, values in steps.items()}


def train_pids(work: Path) -> list[int]:
    """The training processes (train.py) that run in `work`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except (OSError, ValueError):
            continue
        if any(arg.endswith(b"scripts/train.py") for arg in cmdline) and cwd == str(work) \
                and b"-n_sample" not in cmdline:
            pids.append(int(proc.name))
    return pids
