"""Shared test fixtures: the repository, and one run of the workflow on the tiny default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import cluster  # noqa: F401 (a fixture for the SLURM tests)

from vicuna.rehearsal import clone

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


def edited_config(tmp_path: Path, edit) -> Path:
    """The default config.yaml with `edit(config)` applied, written to tmp_path."""
    import copy

    import yaml

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
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env(),
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def run_script(name: str, *args: str, cwd: Path | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd,
                            capture_output=True, text=True, env=env())
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """`make run` once per test session: the workflow's `all` on the default config, from the
    root of a fresh clone (VICUNA_TINY_RUN=DIR points the tests at an existing run instead,
    while developing)."""
    if os.environ.get("VICUNA_TINY_RUN"):
        return Path(os.environ["VICUNA_TINY_RUN"])
    workdir = clone(tmp_path_factory.mktemp("tiny_run"))
    snakemake(workdir, "--profile", "profiles/local", "all")
    return workdir


@pytest.fixture(scope="session")
def tiny_meta(tmp_path_factory) -> dict[str, Path]:
    """A random tiny LLaMA in Meta's format, its tokenizer, and its OpenNMT-py conversion."""
    import torch

    from vicuna import llama, prompt, synthetic, tokenizer

    root = tmp_path_factory.mktemp("tiny_meta")
    sets = synthetic.generate(seed=7, n_alpaca=300, n_sharegpt=50, n_heldout=10, n_pretrain=300)
    texts = [prompt.alpaca(**r) for r in sets["alpaca"]] + sets["pretrain"]
    sp = tokenizer.train(texts, 320, root / "tokenizer.model")
    torch.manual_seed(0)
    args = llama.ModelArgs(dim=64, n_layers=2, n_heads=4, vocab_size=sp.get_piece_size(),
                           multiple_of=16, norm_eps=1e-5)
    model = llama.Transformer(args)
    for p in model.parameters():  # larger than init scale, so positions matter in the logits
        torch.nn.init.normal_(p, std=0.2)
    llama.save_meta(model, root / "meta")
    onmt = root / "tiny-onmt.pt"
    run_script("convert_llama.py", "--model_dir", str(root / "meta"), "--tokenizer_model",
               str(root / "tokenizer.model"), "--output", str(onmt))
    return {"root": root, "meta": root / "meta", "tokenizer": root / "tokenizer.model",
            "onmt": onmt}
