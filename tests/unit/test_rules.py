"""The Snakefile and rules/: `snakemake --lint` finds nothing, with each shipped config (no job
runs: lint reads the rules)."""

from __future__ import annotations

import pytest
from helpers import clone, snakemake

from vicuna.testing import random_base

# The default, the 7B run, and the Vicuna recipe layered on the 7B run (as the README runs them).
LAYERS = {"tiny default": [], "7B": ["configs/llama7b-vicuna.yaml"],
          "Vicuna recipe": ["configs/llama7b-vicuna.yaml", "configs/vicuna-recipe.yaml"]}


@pytest.mark.parametrize("run", LAYERS)
def test_lint_is_clean(tmp_path, run):
    workdir = clone(tmp_path / "work")
    if LAYERS[run]:  # the 7B base, as a placeholder: a configured input must exist
        random_base.write_placeholder(workdir / "llama" / "7B", "7B")
        (workdir / "llama" / "tokenizer.model").write_bytes(b"")
    configfiles = ["--configfile", *LAYERS[run]] if LAYERS[run] else []
    result = snakemake(workdir, "--lint", *configfiles, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr
