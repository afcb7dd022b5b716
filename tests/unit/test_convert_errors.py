"""convert_llama.py refuses, in one line naming the file and the key, what would convert to a
wrong model or end in a traceback: a config without an architecture key (no default of the
reference model stands in for it), a zero-byte or truncated shard of every layout, an
architecture or option it does not support (another model_type, rotary scaling, an unknown
params.json key; also at the workflow's parse time), and a tokenizer that is not
sentencepiece or whose id 3 is not LLaMA's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_convert import checkpoints, copy_case, refusal  # noqa: F401 (checkpoints: a fixture)

from vicuna import config_check, tokenizer
from vicuna.weights.layout import config_shape, model_files

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


# --------------------------------------------------------------------------------------------
# What the converter does not support is refused by name, before a weight is read


@pytest.mark.parametrize("case, config, edit, named", [
    ("hf-bin", "config.json", {"model_type": "qwen2"},
     "model_type 'qwen2', only 'llama' and 'mistral' are supported"),
    ("hf-bin", "config.json", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
     "rotary scaling 'linear' is not supported"),
    ("hf-bin", "config.json", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}},
     "rotary scaling 'llama3' is not supported"),
    ("hf-bin", "config.json", {"model_type": "mistral"},
     "sliding_window missing (not a MistralConfig"),
    ("hf-bin", "config.json", {"model_type": "mistral", "sliding_window": 1},
     "sliding_window 1 is not an integer of at least 2"),
    ("meta-1-shard", "params.json", {"moe": {"num_experts": 8}}, "'moe': not a key of"),
    ("meta-1-shard", "params.json", {"use_scaled_rope": True}, "use_scaled_rope"),
    ("meta-1-shard", "params.json", {"head_dim": 8}, "head_dim 8 is not dim / n_heads = 16"),
])
def test_an_unsupported_architecture_is_named(checkpoints, tmp_path, case, config, edit,  # noqa: F811
                                              named):
    model_dir = copy_case(checkpoints, case, tmp_path)
    params = json.loads((model_dir / config).read_text())
    params.update(edit)
    (model_dir / config).write_text(json.dumps(params))
    message = refusal(model_dir, checkpoints[case]["tokenizer"], tmp_path / "out" / "o.pt")
    assert str(model_dir / config) in message and named in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=re.escape(named)):  # and at the workflow's parse time
        config_shape(model_dir)


TIKTOKEN = "IQ== 0\nIg== 1\nIw== 2\n"  # Llama 3's tokenizer.model: base64 token, rank


@pytest.mark.parametrize("name, text, named", [
    ("tokenizer.json", '{"version": "1.0", "model": {"type": "BPE"}}', "a JSON file"),
    ("tokenizer.model", TIKTOKEN, "a tiktoken BPE file"),
])
def test_a_tokenizer_that_is_not_sentencepiece_is_named(checkpoints, tmp_path, name, text,  # noqa: F811
                                                        named):
    path = tmp_path / name
    path.write_text(text)
    message = refusal(checkpoints["hf-bin"]["dir"], path, tmp_path / "out" / "o.pt")
    assert f"{path}: {named}" in message and "only sentencepiece tokenizers" in message
    assert tokenizer.other_kind(checkpoints["hf-bin"]["tokenizer"]) is None


def test_a_tokenizer_whose_id_3_is_text_is_refused(checkpoints, tmp_path):  # noqa: F811
    """OpenNMT-py's pad token takes id 3, LLaMA's <0x00>: a piece that text gives there would be
    masked out of the model."""
    import sentencepiece as spm

    prefix = tmp_path / "user"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["some words to learn from"] * 50), model_prefix=str(prefix),
        vocab_size=300, model_type="bpe", byte_fallback=True, user_defined_symbols=["<FIM>"],
        normalization_rule_name="identity", minloglevel=2)
    message = refusal(checkpoints["hf-bin"]["dir"], prefix.with_suffix(".model"),
                      tmp_path / "out" / "o.pt")
    assert "user.model: piece 3 is '<FIM>', not LLaMA's <0x00> byte" in message


def test_a_base_with_only_tokenizer_json_is_named(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "tokenizer.json").write_text("{}")
    config = {"base": {"model_dir": str(tmp_path / "base")}, "data": {"corpora": {}},
              "inference": {}}
    config["base"]["tokenizer_model"] = str(tmp_path / "base" / "tokenizer.model")
    with pytest.raises(ValueError) as e:
        config_check.check_inputs(config, lambda path: False, defaulted={"base.tokenizer_model"})
    assert "base.tokenizer_model: " in str(e.value) and \
        "base.model_dir has a tokenizer.json: Hugging Face's fast tokenizer is not supported" \
        in str(e.value)
