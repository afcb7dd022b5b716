"""The README's commands as written, from the root of a clone that holds the tiny default's run:
every `snakemake ...` and `python scripts/...` line of its ```bash blocks (the 7B one is
planned on a placeholder 7B base in tests/unit/test_resources.py), servers started until they answer;
and `make clean`, which must leave the user's weights alone."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import BIN, SEVEN_B, clone, env, readme_commands, run, started

SERVERS = {"scripts/chatbot.py": "-server_port", "scripts/serve_api.py": "--port"}
COMMANDS = [c for c in readme_commands("snakemake ") + readme_commands("python scripts/")
            if c != SEVEN_B]


@pytest.fixture(scope="module")
def user_tree(tiny_run, tiny_meta, tmp_path_factory) -> Path:
    """A copy of the tiny default's run (a clone after `make run`), with a LLaMA in Meta's
    layout in llama/7B and its tokenizer in llama/, where the README tells users to put them."""
    tree = tmp_path_factory.mktemp("user") / "repo"
    shutil.copytree(tiny_run, tree, symlinks=True)  # mtimes kept: the run stays up to date
    shutil.copytree(tiny_meta["meta"], tree / "llama" / "7B")
    shutil.copy(tiny_meta["tokenizer"], tree / "llama" / "tokenizer.model")
    return tree


def test_the_readme_has_the_commands_this_file_runs():
    scripts = {shlex.split(c)[1] for c in COMMANDS if c.startswith("python ")}
    assert {"scripts/convert_llama.py", "scripts/simple_inference.py", "scripts/chatbot.py"} <= scripts
    assert any("--report" in c for c in COMMANDS) and "--configfile" in SEVEN_B


def serve_until_it_answers(command: str, tree: Path) -> None:
    args = shlex.split(command)
    port = int(args[args.index(SERVERS[args[1]]) + 1])
    # `make chat` is make, then the server: the whole process group goes when this ends
    with started(command, shell=True, cwd=tree, env=env(), stdout=subprocess.PIPE,
                 stderr=subprocess.STDOUT, text=True) as proc:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"{command} exited:\n{proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"{command}: nothing on port {port} after 120 s"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                return
            except urllib.error.HTTPError:  # answering, with a status of its own (an API's 404)
                return
            except OSError:
                time.sleep(1)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(user_tree, command):
    if shlex.split(command)[1] in SERVERS:
        serve_until_it_answers(command, user_tree)
        return
    if "| dot " in command and not shutil.which("dot"):
        pytest.skip("graphviz's dot is not installed (make test installs it as root)")
    result = run(command, shell=True, cwd=user_tree, env=env(), timeout=600)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    for out in re.findall(r"(?:-output|--output|--report|>) (\S+)", command):
        assert (user_tree / out).exists(), f"{command} did not write {out}"


def test_make_clean_keeps_the_weights_and_removes_what_the_workflow_made(tmp_path):
    """`make clean` removes the run's folder (and the tiny default's synthetic sources), never
    another run's files or an input the config names."""
    tree = clone(tmp_path / "repo")
    tiny = "runs/llama-tiny"
    made = [f"{tiny}/vocab.txt", f"{tiny}/llama-tiny-vicuna-onmt.pt", "synthetic/alpaca.json",
            "synthetic/llama/tokenizer.model", f"{tiny}/dataAI/valid.txt",
            f"{tiny}/finetuned_llama-tiny/llama-tiny-vicuna-onmt_step_200.pt",
            f"{tiny}/logs/finetune.log",
            f"{tiny}/finetuned_llama-tiny/logs/Dec-01_10-00-00/events.out.tfevents.1796000000.host.1.0",
            f"{tiny}/outputs/predictions_py.txt", f"{tiny}/dataAI/sharegpt.txt.part"]
    seven_b = ["runs/llama7B/finetuned_llama7B/llama7B-vicuna-onmt_step_500.pt",
               "runs/llama7B/outputs/predictions_ct2.txt"]
    kept = ["llama/7B/params.json", "llama/7B/consolidated.00.pth", "llama/tokenizer.model",
            "notes.txt", *seven_b]
    for name in made + kept:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")
    result = subprocess.run(["make", "clean", f"VENV={BIN.parent}"], cwd=tree, env=env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [n for n in kept if not (tree / n).is_file()] == []  # the 7B run's files too
    assert [n for n in made if (tree / n).exists()] == []
    # the 7B config names llama/7B as its input: cleaning its run keeps it too
    result = subprocess.run(["make", "clean", f"VENV={BIN.parent}",
                             "CONFIG=configs/llama7b-vicuna.yaml"], cwd=tree, env=env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tree / "llama/7B/consolidated.00.pth").is_file() and (tree / "notes.txt").is_file()
    assert [n for n in seven_b if (tree / n).exists()] == []
