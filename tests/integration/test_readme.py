"""The README's and docs/ pages' commands as written, from the root of a clone that holds the
tiny default's run: every line of their ```bash blocks (the 7B command is planned on
placeholder bases in tests/unit/test_resources.py; docs/own-model.md's are run on a base of
their own in test_runs_apart.py), servers started until they answer; `make run` ends with its
summary; and `make clean`, which must leave the user's weights alone."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import BIN, PAGES, REPO, SEVEN_B, clone, env, page_commands, run, started

from vicuna import files
from vicuna.publish import hub_folder

SERVERS = {"scripts/chatbot.py": "-server_port", "scripts/serve_api.py": "--port",
           "chat": "PORT", "serve": "PORT"}
DEFAULT_PORTS = {"chat": 7860, "serve": 8000}  # the Makefile's
OWN_MODEL = REPO / "docs" / "own-model.md"
# The make targets a page may show; test/test-fast are this suite itself.
MAKE = ("make run", "make chat", "make serve")
# each distinct command once, named by the first page that shows it
COMMANDS: dict[str, str] = {}
for _page in PAGES:
    for _c in page_commands(_page):
        if _page != OWN_MODEL and _c != SEVEN_B and not _c.startswith("make test") \
                and _c not in COMMANDS.values():
            _id = f"{_page.relative_to(REPO)}: {' '.join(_c.split()[:2])}"
            _n = sum(key.startswith(_id) for key in COMMANDS)
            COMMANDS[_id + (f" ({_n + 1})" if _n else "")] = _c


@pytest.fixture(scope="module")
def user_tree(tiny_run, tiny_meta, tmp_path_factory) -> Path:
    """A copy of the tiny default's run (a clone after `make run`), with a LLaMA in Meta's
    layout in llama/7B and its tokenizer in llama/, where the README tells users to put them."""
    tree = tmp_path_factory.mktemp("user") / "repo"
    shutil.copytree(tiny_run, tree, symlinks=True)  # mtimes kept: the run stays up to date
    shutil.copytree(tiny_meta["meta"], tree / "llama" / "7B")
    shutil.copy(tiny_meta["tokenizer"], tree / "llama" / "tokenizer.model")
    return tree


def test_the_pages_have_the_commands_this_file_runs():
    commands = list(COMMANDS.values())
    scripts = {shlex.split(c)[1] for c in commands if c.startswith("python ")}
    assert {"scripts/convert_llama.py", "scripts/simple_inference.py", "scripts/chatbot.py",
            "scripts/serve_api.py", "scripts/release_model.py"} <= scripts
    assert any("--report" in c for c in commands) and "--configfile" in SEVEN_B
    assert {"make run", "make chat", "make serve"} <= set(commands)
    # every line of every page is one this file knows how to run
    assert all(c.startswith(("snakemake ", "python scripts/", *MAKE)) for c in commands), commands


def written_kind(command: str):
    """What a command's output must be: a torch checkpoint, a release directory, an HTML file,
    a Hub folder."""
    if "model_card.py" in command:
        return hub_folder.hub_folder
    if "--format huggingface" in command:
        return files.hf_model_dir
    if "--format gguf" in command:
        return files.gguf_file
    if "release_model.py" in command:
        return files.ct2_model_dir
    if command.endswith(".pt") or ".pt " in command.split("--output")[-1]:
        return files.torch_zip
    if "--report" in command:
        return lambda path: path.read_bytes()[:200].lstrip().lower().startswith(b"<!doctype html")
    return files.any_file


def as_run(command: str) -> str:
    """A make command with the tests' venv (a clone has none of its own): what `make` would
    install there is the venv these tests run in."""
    return f"{command} VENV={BIN.parent}" if command.startswith("make ") else command


def port_of(command: str) -> int:
    args = shlex.split(command)
    if args[0] == "make":
        given = [a for a in args if a.startswith("PORT=")]
        return int(given[0].split("=")[1]) if given else DEFAULT_PORTS[args[1]]
    return int(args[args.index(SERVERS[args[1]]) + 1])


def serve_until_it_answers(command: str, tree: Path) -> None:
    port = port_of(command)
    # `make chat` is make, then the server: the whole process group goes when this ends
    with started(as_run(command), shell=True, cwd=tree, env=env(), stdout=subprocess.PIPE,
                 stderr=subprocess.STDOUT, text=True) as proc:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"{command} exited:\n{proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"{command}: nothing on port {port} after 180 s"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                return
            except urllib.error.HTTPError:  # answering, with a status of its own (an API's 404)
                return
            except OSError:
                time.sleep(1)


@pytest.mark.parametrize("command", COMMANDS)
def test_page_command_runs_as_written(user_tree, command):
    command = COMMANDS[command]
    if shlex.split(command)[1] in SERVERS:
        serve_until_it_answers(command, user_tree)
        return
    if "| dot " in command and not shutil.which("dot"):
        pytest.skip("graphviz's dot is not installed (make test installs it as root)")
    result = run(as_run(command), shell=True, cwd=user_tree, env=env(), timeout=600)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    for out in re.findall(r"(?:-output|--output|--report|>) (\S+)", command):
        assert (user_tree / out).exists(), f"{command} did not write {out}"
        assert written_kind(command)(user_tree / out), f"{command}: {out} is not what it says"
    if command == "make run":  # nothing to do, and still the summary of what is there
        summary = result.stdout[result.stdout.index("Made in runs/llama-tiny/"):]
        assert "Evaluation (runs/llama-tiny/outputs/eval.tsv):" in summary
        assert re.search(r"exact_match +[\d.]+ +[\d.]+", summary)
        assert "CTranslate2       runs/llama-tiny/finetuned_llama-tiny/llama-tiny-vicuna-onmt_" \
               "step_800.concat_CT2" in summary
        assert "make chat" in summary and "make serve" in summary


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
