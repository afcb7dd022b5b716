"""convert_llama.py refuses, in one line naming the file and the key, what would convert to a
wrong model or end in a traceback: a config without an architecture key (no default of the
reference model stands in for it), and a zero-byte or truncated shard of every layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_convert import checkpoints, copy_case, refusal  # noqa: F401 (checkpoints: a fixture)

from vicuna.weights.layout import model_files

# Each key the shape needs, taken out of one case's config (the issue: n_heads, where a 4-head
# model was converted with the reference model's 32).
MISSING_KEYS = {
    "params.json": {"meta-1-shard": ["n_heads", "n_layers", "norm_eps"],
                    "meta-4-shards-gqa": ["dim"], "meta-2-shards": ["multiple_of"]},
    "config.json": {"hf-bin": ["hidden_size", "num_attention_heads", "vocab_size"],
                    "hf-safetensors-2-shards-gqa": ["num_hidden_layers", "intermediate_size"]},
}


@pytest.mark.parametrize("case, config, key", [
    (case, config, key) for config, cases in MISSING_KEYS.items()
    for case, keys in cases.items() for key in keys])
def test_a_missing_architecture_key_is_named(checkpoints, tmp_path, case, config, key):  # noqa: F811
    model_dir = copy_case(checkpoints, case, tmp_path)
    params = json.loads((model_dir / config).read_text())
    del params[key]
    (model_dir / config).write_text(json.dumps(params))
    message = refusal(model_dir, checkpoints[case]["tokenizer"], tmp_path / "out" / "o.pt")
    assert str(model_dir / config) in message and f"{key} missing" in message
    assert not (tmp_path / "out").exists()


def weight_file(model_dir: Path) -> Path:
    """The last weight file the converter reads (a later shard, where there are several)."""
    return [p for p in model_files(model_dir) if p.suffix in (".pth", ".bin", ".safetensors")][-1]


@pytest.mark.parametrize("case", ["meta-1-shard", "meta-2-shards", "hf-bin",
                                  "hf-safetensors-2-shards-gqa"])
@pytest.mark.parametrize("damage", ["zero-byte", "truncated"])
def test_a_damaged_shard_is_named(checkpoints, tmp_path, case, damage):  # noqa: F811
    model_dir = copy_case(checkpoints, case, tmp_path)
    shard = weight_file(model_dir)
    size = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(0 if damage == "zero-byte" else size // 2)
    message = refusal(model_dir, checkpoints[case]["tokenizer"], tmp_path / "out" / "o.pt")
    assert message.startswith(f"error: {shard}: ")
    if damage == "zero-byte":
        assert "empty file, not a checkpoint" in message
    else:
        assert "truncated" in message
    assert not (tmp_path / "out").exists()


def test_model_files_are_what_the_converter_reads(checkpoints, tmp_path):  # noqa: F811
    """The workflow's inputs of convert_llama, by layout (rules/common.smk asks this)."""
    meta = checkpoints["meta-2-shards"]["dir"]
    assert model_files(meta) == [meta / "params.json", meta / "consolidated.00.pth",
                                 meta / "consolidated.01.pth"]
    hf = checkpoints["hf-safetensors-2-shards-gqa"]["dir"]
    assert model_files(hf) == [hf / "config.json", hf / "model.safetensors.index.json",
                               *sorted(hf.glob("model-*-of-*.safetensors"))]
    binary = checkpoints["hf-bin"]["dir"]
    assert model_files(binary) == [binary / "config.json", binary / "pytorch_model.bin"]
    # the tiny default's base before its pretraining: Meta's files, to be made
    assert model_files(tmp_path / "later") == [tmp_path / "later" / "params.json",
                                               tmp_path / "later" / "consolidated.00.pth"]
    # a shard the index lists but that is missing is listed all the same (Snakemake names it)
    broken = copy_case(checkpoints, "hf-safetensors-2-shards-gqa", tmp_path)
    gone = sorted(broken.glob("model-*-of-*.safetensors"))[1]
    gone.unlink()
    assert gone in model_files(broken)
