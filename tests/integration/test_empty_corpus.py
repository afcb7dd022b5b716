"""A corpus with no example in it (0 bytes, or blank lines only) stops where it comes in: the
download (scripts/download.py --corpus, and the download_dataset rule through Snakemake, from a
real HTTP server on 127.0.0.1) names the URL and leaves neither the corpus nor its manifest;
write_finetune_config.py names the corpus and its path, before OpenNMT-py's bare StopIteration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, clone, edited_config, run_script, snakemake
from http_server import url

EMPTY = {"0 bytes": b"", "only blank lines": b"\n  \n\t\n\n"}
ONE = "### Instruction:｟newline｠Repeat: cat｟newline｠｟newline｠### Response:｟newline｠cat\n"


def download_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "scripts" / "download.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("why", EMPTY)
def test_download_of_a_corpus_with_no_example_fails_naming_the_url(server, tmp_path, why):  # noqa: F811
    server.files["/corpus.txt"] = EMPTY[why]
    out, manifest = tmp_path / "dataAI" / "c.txt", tmp_path / "dataAI" / "c.manifest.json"
    done = download_cli("--url", url(server, "/corpus.txt"), "--output", str(out),
                        "--manifest", str(manifest), "--corpus", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert done.stderr == (f"error: {url(server, '/corpus.txt')}: the corpus holds no example "
                           f"({why}): nothing written to {out}\n")
    assert leftovers(out.parent) == []  # no corpus, no manifest, no .part


def test_download_of_a_corpus_with_one_example_succeeds(server, tmp_path):  # noqa: F811
    server.files["/corpus.txt"] = ("\n" + ONE).encode()
    out, manifest = tmp_path / "c.txt", tmp_path / "c.manifest.json"
    done = download_cli("--url", url(server, "/corpus.txt"), "--output", str(out),
                        "--manifest", str(manifest), "--corpus", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == "\n" + ONE
    assert json.loads(manifest.read_text())["bytes"] == out.stat().st_size


def test_an_empty_file_is_still_fine_when_it_is_not_a_corpus(server, tmp_path):  # noqa: F811
    server.files["/empty.bin"] = b""
    done = download_cli("--url", url(server, "/empty.bin"), "--output", str(tmp_path / "e.bin"),
                        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "e.bin").read_bytes() == b""


@pytest.mark.parametrize("why", [*EMPTY, "one example"])
def test_download_rule_refuses_a_corpus_with_no_example(server, tmp_path, why):  # noqa: F811
    """The download_dataset rule, as a config with a `url:` corpus runs it."""
    server.files["/extra.txt"] = EMPTY.get(why, ONE.encode())
    source = url(server, "/extra.txt")
    workdir = clone(tmp_path / "work")

    def edit(config):
        config["data"]["corpora"]["extra"] = {"url": source, "weight": 1}

    (workdir / "config.yaml").write_text(edited_config(tmp_path, edit).read_text())
    result = snakemake(workdir, "-c1", "runs/llama-tiny/dataAI/extra.txt", check=False,
                       timeout=300)
    log = (workdir / "runs/llama-tiny/logs/download_dataset/extra.log").read_text()
    if why == "one example":
        assert result.returncode == 0, result.stderr[-3000:]
        assert (workdir / "runs/llama-tiny/dataAI/extra.txt").read_text(encoding="utf-8") == ONE
        assert (workdir / "runs/llama-tiny/dataAI/extra.manifest.json").is_file()
        return
    assert result.returncode != 0
    message = (f"error: {source}: the corpus holds no example ({why}): nothing written to "
               f"runs/llama-tiny/dataAI/extra.txt")
    assert log.strip().splitlines()[-1] == message
    # the line of the failed job's log that says why, on the console (the Snakefile's onerror)
    assert f"  download_dataset: {message}\n    runs/llama-tiny/logs/download_dataset/extra.log" \
        in result.stdout + result.stderr
    assert leftovers(workdir / "runs/llama-tiny/dataAI") == []  # neither the corpus nor its manifest


def finetune_config_args(tiny_meta, tmp_path: Path, corpora: dict[str, Path],
                         valid: Path | None = None) -> list[str]:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<unk>\n<s>\n</s>\n<blank>\n")
    train = json.dumps(yaml.safe_load((REPO / "config.yaml").read_text())["train"])
    return ["--model_dir", str(tiny_meta["meta"]), "--vocab", str(vocab),
            "--base_checkpoint", str(tiny_meta["onmt"]),
            "--tokenizer_model", str(tiny_meta["tokenizer"]),
            *[arg for name, path in corpora.items() for arg in ("--corpus", f"{name}={path}:1")],
            *(["--valid", str(valid)] if valid else []),
            "--save_model", str(tmp_path / "ft" / "m"), "--tensorboard_dir", str(tmp_path / "tb"),
            "--train_json", train, "--output", str(tmp_path / "replicate_vicuna.yaml")]


@pytest.mark.parametrize("why", EMPTY)
@pytest.mark.parametrize("which", ["sharegpt", "valid"])
def test_finetune_config_names_a_corpus_with_no_example(tiny_meta, tmp_path, why, which):
    good, bad = tmp_path / "alpaca.txt", tmp_path / f"{which}.txt"
    good.write_text(ONE, encoding="utf-8")
    bad.write_bytes(EMPTY[why])
    corpora = {"alpaca": good, **({"sharegpt": bad} if which == "sharegpt" else {})}
    args = finetune_config_args(tiny_meta, tmp_path, corpora, valid=bad if which == "valid" else good)
    result = run_script("write_finetune_config.py", *args, check=False)
    assert result.returncode != 0
    what = "corpus sharegpt" if which == "sharegpt" else "validation corpus"
    assert result.stderr.strip().splitlines()[-1] == f"error: {what} ({bad}) holds no example ({why})"
    assert not (tmp_path / "replicate_vicuna.yaml").exists()


def test_finetune_config_takes_corpora_with_examples(tiny_meta, tmp_path):
    good = tmp_path / "alpaca.txt"
    good.write_text("\n" + ONE, encoding="utf-8")  # a blank line first: one example all the same
    run_script("write_finetune_config.py", *finetune_config_args(tiny_meta, tmp_path, {"alpaca": good}))
    cfg = yaml.safe_load((tmp_path / "replicate_vicuna.yaml").read_text())
    assert cfg["data"]["alpaca"]["path_src"] == str(good) and cfg["data"]["alpaca"]["weight"] == 1
