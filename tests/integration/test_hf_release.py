"""The Hugging Face releases of the tiny default, as `all` builds them: transformers generates the
workflow's own greedy predictions from the merged model, and peft loads the LoRA adapter on the
exported base."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_script

from vicuna import prompt
from vicuna.weights import checkpoint

transformers = pytest.importorskip("transformers")

TINY = "runs/llama-tiny"
STEP = f"{TINY}/finetuned_llama-tiny/llama-tiny-vicuna-onmt_step_800"
TOKENIZER = "synthetic/llama/tokenizer.model"


def greedy_predictions(tiny_run, model_dir) -> tuple[list[str], list[str]]:
    """transformers' greedy answers to the inference inputs, written as simple_inference writes
    them (a corpus line, ｟newline｠ for "\\n", up to </s> or 64 new tokens: the config's
    max_length), and the workflow's own OpenNMT-py predictions."""
    import sentencepiece as spm

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    sp = spm.SentencePieceProcessor(model_file=str(tiny_run / TOKENIZER))
    lines = (tiny_run / "synthetic/input_examples.txt").read_text(encoding="utf-8").splitlines()
    got = []
    for line in lines:
        text = prompt.from_line(line)
        ids = tok(text).input_ids
        assert ids == [1, *sp.encode(text)]  # what the workflow's engines read: <s> + pieces
        with torch.no_grad():
            out = model.eval().generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False,
                                        eos_token_id=2, pad_token_id=2)
        got.append(prompt.to_line(tok.decode(out[0, len(ids):], skip_special_tokens=True)))
    want = (tiny_run / TINY / "outputs/predictions_py.txt").read_text(encoding="utf-8").split("\n")
    return got, want[:len(lines)]


def files(directory) -> list[str]:
    """What a directory holds, without Snakemake's .snakemake_timestamp."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def test_all_builds_the_hugging_face_releases(tiny_run):
    merged, base, adapter = (tiny_run / f"{STEP}.concat_HF", tiny_run / TINY / "llama-tiny_HF",
                             tiny_run / f"{STEP}_PEFT")
    for model_dir in (merged, base):
        assert files(model_dir) == [
            "config.json", "generation_config.json", "model.safetensors",
            "special_tokens_map.json", "tokenizer.model", "tokenizer_config.json"]
        config = json.loads((model_dir / "config.json").read_text())
        assert config["dtype"] == "float16"  # config.yaml's release.huggingface.dtype
        assert (config["hidden_size"], config["num_hidden_layers"],
                config["num_attention_heads"]) == (128, 2, 4)  # synthetic.model
    assert files(adapter) == ["adapter_config.json", "adapter_model.safetensors"]
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    # portable: the base from the run's folder, not a path of the machine that made it
    assert adapter_config["base_model_name_or_path"] == "llama-tiny_HF"
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (8, 16)  # train.lora


def test_transformers_greedy_answers_are_the_workflows(tiny_run, tmp_path):
    """The float32 export (the merged checkpoint is float32) and the workflow's own float16
    release both give predictions_py.txt, prompt for prompt."""
    out = tmp_path / "hf32"
    run_script("release_model.py", "--model", str(tiny_run / f"{STEP}.concat.pt"), "--output",
               str(out), "--format", "huggingface", "--dtype", "float32", "--tokenizer_model",
               str(tiny_run / TOKENIZER))
    got, want = greedy_predictions(tiny_run, out)
    assert len(got) == 32 and got == want
    got16, _ = greedy_predictions(tiny_run, tiny_run / f"{STEP}.concat_HF")
    agree = sum(a == b for a, b in zip(got16, want, strict=True))
    print(f"float16 release: {agree}/{len(want)} greedy predictions equal OpenNMT-py's")
    assert agree >= 0.9 * len(want)


def test_peft_adapter_on_the_exported_base_is_the_merged_model(tiny_run, monkeypatch):
    peft = pytest.importorskip("peft")
    run, step = tiny_run / TINY, STEP.removeprefix(f"{TINY}/")
    monkeypatch.chdir(run)  # adapter_config.json names its base from the run's folder
    base_name = json.loads((run / f"{step}_PEFT/adapter_config.json").read_text())[
        "base_model_name_or_path"]
    model = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(base_name, dtype=torch.float32),
        f"{step}_PEFT").eval()
    torch.manual_seed(1)
    tokens = torch.randint(4, 768, (3, 40))  # from 4: id 3 is OpenNMT-py's pad
    with torch.no_grad():
        got = model(input_ids=tokens).logits.float()
    merged = checkpoint.logits(checkpoint.build_model(checkpoint.load(f"{step}.concat.pt")),
                               tokens)
    base = checkpoint.logits(checkpoint.build_model(checkpoint.load("llama-tiny-vicuna-onmt.pt")),
                             tokens)
    # float16 base weights: within float16's rounding of the merged model, far from the base's
    assert (got - merged).abs().max().item() <= 0.05
    assert (merged - base).abs().max().item() > 1.0
