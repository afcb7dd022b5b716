"""The bases of configs/ rehearsed at their real width: each base's config layered on the 7B run
as the docs give the command, plus the rehearsal's shrinking override (one layer of random
weights of the real shape, the real LLaMA tokenizer, a few training steps on the CPU).

- Mistral 7B (Hugging Face's layout, 8 KV heads, FFN 14,336, a 4,096-token window): its
  releases and predictions in every mode through profiles/slurm on the single-node test cluster
  (test_rehearsal.py runs LLaMA's whole graph there);
- Llama 2 7B (Meta's layout, params.json with vocab_size -1 and norm_eps 1e-05): locally, up to
  its releases.

Each release is checked against the merged OpenNMT-py checkpoint (transformers for the Hugging
Face release, gguf-py's reader for the GGUF's metadata)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers import BIN
from test_rehearsal import SITE, unactivated_env

from vicuna.testing import rehearsal

MISTRAL = rehearsal.BASES["mistral-7B"]
LLAMA2 = rehearsal.BASES["llama2-7B"]
# The jobs that make and run Mistral's releases (the rest of the graph, the data report, MMLU,
# the evaluation and the cards, is LLaMA's: test_rehearsal.py runs it): one GGUF type, to keep
# the rehearsal short, and no release_hf_base, a Hugging Face base being its own PEFT base.
MISTRAL_RULES = {"download_dataset": 2, "convert_llama": 1, "extract_vocabulary": 1,
                 "finetune_config": 1, "finetune": 1, "merge_lora": 1, "release_ct2": 1,
                 "release_hf": 1, "release_peft": 1, "release_gguf": 1, "translate_opts": 3,
                 "simple_inference": 3}


def step(base: rehearsal.Base) -> str:
    name = base.run.split("/")[-1]
    return f"{base.run}/finetuned_{name}/{name}-vicuna-onmt_step_4"


def snakemake(work: Path, base: rehearsal.Base, *args: str, timeout: int = 1500) -> str:
    cmd = ["timeout", "-k", "10", str(timeout), str(BIN / "snakemake"), "--configfile",
           *base.configfiles, *args]
    proc = subprocess.run(cmd, cwd=work, env=unactivated_env(), capture_output=True, text=True)
    assert proc.returncode != 124, f"timed out:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def rehearse(root: Path, base: str, *args: str, changes: dict | None = None) -> tuple[Path, str]:
    if not rehearsal.LLAMA_TOKENIZER.is_file():
        pytest.skip(f"the real LLaMA tokenizer is not here ({rehearsal.LLAMA_TOKENIZER})")
    corpora = rehearsal.flattened_corpora(root / "www")
    work = root / "clone"
    work.mkdir()
    with rehearsal.serve(root / "www") as url:
        rehearsal.prepare(work, url, corpora, base=base, changes=changes)
        log = snakemake(work, rehearsal.BASES[base], *args)
    return work, log


@pytest.fixture(scope="module")
def mistral(cluster, tmp_path_factory) -> tuple[Path, str]:
    s = step(MISTRAL)
    predictions = [f"{MISTRAL.run}/outputs/predictions_{mode}.txt" for mode in ("py", "ct2", "gguf")]
    return rehearse(tmp_path_factory.mktemp("mistral"), "mistral-7B", "--profile",
                    "profiles/slurm", *SITE, "--", f"{s}.concat_HF", f"{s}_PEFT",
                    f"{s}.concat-q8_0.gguf", f"{s}.concat_CT2", *predictions,
                    changes={"release": {"gguf": ["q8_0"]}})


@pytest.fixture(scope="module")
def llama2(tmp_path_factory) -> tuple[Path, str]:
    s = step(LLAMA2)
    return rehearse(tmp_path_factory.mktemp("llama2"), "llama2-7B", "--profile", "profiles/local",
                    "--", f"{s}.concat_HF", f"{s}.concat_CT2", f"{s}.concat-q8_0.gguf")


def merged_logits(work: Path, base: rehearsal.Base, tokens):
    from vicuna.weights import checkpoint

    return checkpoint.logits(checkpoint.build_model(checkpoint.load(
        work / f"{step(base)}.concat.pt")), tokens)


def hf_logits(model_dir: Path, tokens):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(input_ids=tokens).logits.float()


def gguf_fields(path: Path, names: tuple[str, ...]) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    return {name: reader.fields[name].contents() for name in names if name in reader.fields}


def test_mistral_every_rule_of_its_releases_ran_through_slurm(mistral):
    _, log = mistral
    table = log.split("Job stats:")[1].split("total")[0]
    ran = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert ran == MISTRAL_RULES


def test_mistral_finetuning_at_its_width(mistral):
    """LoRA on attention whose keys and values have 8 heads of 128, 8-bit feed-forward 14,336
    wide, the base's window carried into the model (OpenNMT-py counts the positions before)."""
    work, _ = mistral
    log = (work / f"{MISTRAL.run}/logs/finetune.log").read_text()
    for layer in ("(w_1): Linear8bitLt(in_features=4096, out_features=14336",
                  "(w_2): Linear8bitLt(in_features=14336, out_features=4096"):
        assert layer in log, layer
    for name in ("linear_keys", "linear_values"):  # with LoRA, 4096 -> 1024
        assert re.search(rf"\({name}\): QLoraLinear_cls\(\s+in_features=4096, out_features=1024,",
                         log), name
    trainable = re.search(r"Trainable parameters = \{'torch\.float32': (\d+)", log)
    # rank 2 on q and o (4096 -> 4096) and on k and v (4096 -> 1024), in the one layer
    assert trainable and int(trainable.group(1)) == 2 * 2 * (4096 + 4096) + 2 * 2 * (4096 + 1024)
    assert "Step  4/    4" in log


def test_mistral_hugging_face_release_is_a_mistral(mistral):
    import torch

    work, _ = mistral
    release = work / f"{step(MISTRAL)}.concat_HF"
    config = json.loads((release / "config.json").read_text())
    assert config["architectures"] == ["MistralForCausalLM"]
    assert (config["sliding_window"], config["num_key_value_heads"], config["intermediate_size"]) \
        == (4096, 8, 14336)
    torch.manual_seed(0)
    tokens = torch.randint(4, 32000, (2, 24))
    expected = merged_logits(work, MISTRAL, tokens)
    got = hf_logits(release, tokens)
    assert (got - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())
    adapter = json.loads((work / f"{step(MISTRAL)}_PEFT/adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "mistralai/Mistral-7B-v0.1"


def test_mistral_gguf_and_ct2_carry_its_shape_and_window(mistral):
    work, _ = mistral
    fields = gguf_fields(work / f"{step(MISTRAL)}.concat-q8_0.gguf", (
        "llama.attention.head_count_kv", "llama.feed_forward_length",
        "llama.attention.sliding_window"))
    assert fields == {"llama.attention.head_count_kv": 8, "llama.feed_forward_length": 14336,
                      "llama.attention.sliding_window": 4096}
    from vicuna.weights import ct2_release

    assert ct2_release.sliding_window(work / f"{step(MISTRAL)}.concat_CT2") == 4096
    n = len((work / "configs/input_examples.txt").read_text().splitlines())
    for mode in ("py", "ct2", "gguf"):
        predictions = work / f"{MISTRAL.run}/outputs/predictions_{mode}.txt"
        assert len(predictions.read_text().splitlines()) == n


def test_llama2_meta_layout_at_7b_width(llama2):
    """Llama 2's params.json (vocab_size -1: the tokenizer's 32,000; norm_eps 1e-05) goes through
    conversion, finetuning and merge into releases that say so and compute the same model."""
    import torch

    work, _ = llama2
    params = json.loads((work / LLAMA2.model_dir / "params.json").read_text())
    assert params["vocab_size"] == -1 and params["norm_eps"] == 1e-05
    release = work / f"{step(LLAMA2)}.concat_HF"
    config = json.loads((release / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["rms_norm_eps"], config["vocab_size"], config["intermediate_size"]) == \
        (1e-05, 32000, 11008)
    torch.manual_seed(0)
    tokens = torch.randint(4, 32000, (2, 24))
    expected = merged_logits(work, LLAMA2, tokens)
    got = hf_logits(release, tokens)
    assert (got - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())
    fields = gguf_fields(work / f"{step(LLAMA2)}.concat-q8_0.gguf", (
        "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size"))
    assert abs(fields["llama.attention.layer_norm_rms_epsilon"] - 1e-05) < 1e-9
    assert (work / f"{step(LLAMA2)}.concat_CT2/model.bin").is_file()
