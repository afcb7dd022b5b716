"""The 7B run rehearsed end to end (issue #11): the README's command with
configs/llama7b-vicuna.yaml unchanged, plus one override file that only shrinks it
(vicuna/testing/rehearsal.py), through profiles/slurm on the single-node test cluster, in a fresh clone,
started as `.venv/bin/snakemake` with the venv not activated."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import BIN
from slurm_cluster import run as slurm
from slurm_cluster import sacct_job

from vicuna.testing import rehearsal

# What this node is, not what the run is: it has 2 CPUs (profiles/slurm gives training 8), and
# a test need not wait the plugin's default 40 s before each status check.
SITE = ["--max-threads", "2", "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs"]
RULES = {"download_dataset": 2, "convert_llama": 1, "extract_vocabulary": 1, "data_report": 1,
         "finetune_config": 1, "finetune_samples": 1, "finetune": 1, "training_curves": 1,
         "merge_lora": 1, "release_ct2": 1, "release_hf": 1, "release_hf_base": 1,
         "release_peft": 1, "release_gguf": 3, "release_modelfile": 1, "translate_opts": 3,
         "simple_inference": 3, "evaluate": 1, "mmlu_download": 1, "mmlu": 1, "publish": 3,
         "all": 1}
LOCAL_RULES = {"all", "finetune_config", "translate_opts", "release_modelfile", "publish"}
STEP = "runs/llama7B/finetuned_llama7B/llama7B-vicuna-onmt_step_4"


def unactivated_env() -> dict[str, str]:
    """The environment without the venv on PATH: jobs must find it by themselves."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN]
    return {**os.environ, "PATH": os.pathsep.join(path)}


def snakemake(work: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    cmd = ["timeout", "-k", "10", str(timeout), str(BIN / "snakemake"), "--configfile",
           rehearsal.CONFIG, rehearsal.OVERRIDE, *args]
    # cwd: the repo root of the clone, as a user runs it (the plugin's logs go there too)
    proc = subprocess.run(cmd, cwd=work, env=unactivated_env(), capture_output=True, text=True)
    assert proc.returncode != 124, f"timed out:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def rehearsed(cluster, tmp_path_factory) -> tuple[Path, str]:
    if not rehearsal.LLAMA_TOKENIZER.is_file():
        pytest.skip(f"the real LLaMA tokenizer is not here ({rehearsal.LLAMA_TOKENIZER})")
    root = tmp_path_factory.mktemp("rehearsal")
    corpora = rehearsal.flattened_corpora(root / "www")
    work = root / "clone"
    work.mkdir()
    with rehearsal.serve(root / "www") as url:
        rehearsal.prepare(work, url, corpora)
        proc = snakemake(work, "--profile", "profiles/slurm", *SITE, "--", "all")
    snakemake(work, "--report", "report.html", timeout=300)
    return work, proc.stdout + proc.stderr


def job_ids(work: Path) -> dict[str, list[str]]:
    """SLURM job ids by job name, from the plugin's per-job logs: the rule, then its
    wildcards (.snakemake/slurm_logs/rule_simple_inference/ct2/ID.log: simple_inference_ct2),
    as the benchmark files are named."""
    ids: dict[str, list[str]] = {}
    logs = work / ".snakemake" / "slurm_logs"
    for log in logs.rglob("*.log"):
        rule, *wildcards = log.parent.relative_to(logs).parts
        ids.setdefault("_".join([rule.removeprefix("rule_"), *wildcards]), []).append(log.stem)
    return ids


def mem_mb(sacct_mem: str) -> float:
    """sacct's ReqMem (4000M, 3.5G, ...) in MB."""
    value, unit = float(sacct_mem[:-1]), sacct_mem[-1]
    return value * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit]


def test_every_rule_of_the_real_graph_ran(rehearsed):
    _, log = rehearsed
    table = log.split("Job stats:")[1].split("total")[0]
    ran = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert ran == RULES  # nothing of the tiny default (synthetic data, flattening) leaked in


def test_both_corpora_were_downloaded_by_the_workflow_and_checked(rehearsed):
    work, _ = rehearsed
    override = (work / rehearsal.OVERRIDE).read_text()
    for name in ("alpaca_clean", "sharegpt"):
        manifest = json.loads((work / f"runs/llama7B/dataAI/{name}.manifest.json").read_text())
        assert manifest["source"].startswith("http://127.0.0.1:")
        assert manifest["sha256"] in override  # the checksum the config gave
        assert (work / f"runs/llama7B/logs/download_dataset/{name}.log").is_file()


def test_lora_finetuning_at_7b_width_with_8bit_feed_forward(rehearsed):
    work, _ = rehearsed
    log = (work / "runs/llama7B/logs/finetune.log").read_text()
    for layer in ("(w_1): Linear8bitLt(in_features=4096, out_features=11008",
                  "(w_2): Linear8bitLt(in_features=11008, out_features=4096"):
        assert layer in log
    trainable = re.search(r"Trainable parameters = \{'torch\.float32': (\d+)", log)
    int8 = re.search(r"Non trainable parameters = \{.*'torch\.int8': (\d+)", log)
    # LoRA rank 2 on the four 4096 x 4096 attention layers of the one layer: 4 x 2 x 2 x 4096
    assert trainable and int(trainable.group(1)) == 4 * 2 * 2 * 4096
    assert int8 and int(int8.group(1)) == 3 * 4096 * 11008
    assert "Step  4/    4" in log and (work / f"{STEP}.pt").is_file()


def test_predictions_in_every_mode_from_the_int8_float16_and_q8_0_releases(rehearsed):
    work, _ = rehearsed
    n = len((work / "configs/input_examples.txt").read_text().splitlines())
    for mode in ("py", "ct2", "gguf"):
        assert len((work / f"runs/llama7B/outputs/predictions_{mode}.txt").read_text().splitlines()) == n
    assert "(int8_float16, rotary base 10000)" in (work / "runs/llama7B/logs/release_ct2.log").read_text()
    assert (work / f"{STEP}.concat_CT2/model.bin").is_file()


def test_gguf_releases_at_7b_width(rehearsed):
    """The 7B config's GGUFs (F16, Q8_0, Q4_K_M) of the 7B-shaped model, read back by gguf-py:
    the shape and the rotary base in their metadata, each type smaller than the one before,
    and the Modelfile naming the 4-bit one."""
    import gguf

    work, _ = rehearsed
    sizes = {}
    for kind in ("f16", "q8_0", "q4_k_m"):
        path = work / f"{STEP}.concat-{kind}.gguf"
        reader = gguf.GGUFReader(path)
        fields = {name: reader.fields[name].contents() for name in (
            "llama.embedding_length", "llama.attention.head_count", "llama.feed_forward_length",
            "llama.rope.freq_base")}
        assert fields == {"llama.embedding_length": 4096, "llama.attention.head_count": 32,
                          "llama.feed_forward_length": 11008, "llama.rope.freq_base": 10000.0}
        sizes[kind] = path.stat().st_size
    assert sizes["q4_k_m"] < sizes["q8_0"] < sizes["f16"]
    modelfile = (work / f"{STEP}.concat.Modelfile").read_text()
    assert modelfile.startswith("FROM ./llama7B-vicuna-onmt_step_4.concat-q4_k_m.gguf")


def test_hugging_face_release_and_peft_adapter(rehearsed, monkeypatch):
    """The merged model as a float16 LlamaForCausalLM of the 7B's shape, and the LoRA as a PEFT
    adapter on llama7B_HF (the Meta-layout base exported the same way): transformers gives
    OpenNMT-py's logits, and peft loads every LoRA tensor the adapter holds."""
    work, _ = rehearsed
    check_hugging_face_release(work, monkeypatch)


def check_hugging_face_release(work: Path, monkeypatch) -> None:
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    import torch
    from safetensors.torch import load_file

    from vicuna.weights import checkpoint

    merged = work / f"{STEP}.concat_HF"
    config = json.loads((merged / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["intermediate_size"],
            config["vocab_size"], config["dtype"]) == (4096, 32, 11008, 32000, "float16")
    assert (merged / "model.safetensors").is_file()  # 0.9 GB: under max_shard_mb, one file
    assert "(LlamaForCausalLM, float16, 1 safetensors file)" in (
        work / "runs/llama7B/logs/release_hf.log").read_text()
    torch.manual_seed(0)
    tokens = torch.randint(4, 32000, (2, 24))  # from 4: id 3 is OpenNMT-py's pad
    expected = checkpoint.logits(checkpoint.build_model(checkpoint.load(
        work / f"{STEP}.concat.pt")), tokens)
    model = transformers.AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    with torch.no_grad():
        got = model.eval()(input_ids=tokens).logits.float()
    assert (got - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())
    del model
    monkeypatch.chdir(work / rehearsal.RUN)  # adapter_config.json names its base from the run
    adapter = work / f"{STEP}_PEFT"
    assert json.loads((adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == "llama7B_HF"
    model = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained("llama7B_HF", dtype=torch.float32),
        adapter)
    loaded = model.state_dict()
    saved = load_file(adapter / "adapter_model.safetensors")
    assert len(saved) == 2 * 4  # lora_A, lora_B of q, k, v, o in the one layer
    for name, tensor in saved.items():
        assert torch.equal(loaded[name.replace(".weight", ".default.weight")], tensor), name
    with torch.no_grad():
        got = model.eval()(input_ids=tokens).logits.float()
    assert (got - expected).abs().max().item() <= 1e-3 * max(1.0, expected.abs().max().item())


def test_evaluation_loads_no_model_with_nothing_to_score(rehearsed):
    work, _ = rehearsed
    result = json.loads((work / "runs/llama7B/outputs/eval.json").read_text())
    mmlu = json.loads((work / "runs/llama7B/outputs/mmlu.json").read_text())  # only MMLU's scores joined in
    for name in ("base", "finetuned"):
        assert result[name] == {f"mmlu_{m}_acc": mmlu[name][m]["acc_all"] for m in ("generate", "loglik")}
    for pair in ("py_ct2", "py_gguf", "ct2_gguf"):
        assert 0 <= result[f"{pair}_agreement"] <= 1
    assert "no model loaded" in (work / "runs/llama7B/logs/evaluate.log").read_text()


def test_mmlu_from_a_tar_served_on_127_0_0_1(rehearsed):
    """The 7B config's MMLU stage on the 7B-shaped base: data.tar fetched by the workflow and
    checked, both models scored by both methods, one row per question."""
    work, _ = rehearsed
    manifest = json.loads((work / "runs/llama7B/dataAI/mmlu_data.manifest.json").read_text())
    assert manifest["source"].startswith("http://127.0.0.1:")
    assert manifest["sha256"] in (work / rehearsal.OVERRIDE).read_text()
    result = json.loads((work / "runs/llama7B/outputs/mmlu.json").read_text())
    assert result["shots"] == 5 and result["n"] == 6
    assert sorted(result["base"]["loglik"]["subjects"]) == ["first_word", "word_counting"]
    assert len((work / "runs/llama7B/outputs/mmlu.tsv").read_text().splitlines()) == 7


def test_report_and_curves(rehearsed):
    work, _ = rehearsed
    assert (work / "report.html").stat().st_size > 100_000
    assert (work / "runs/llama7B/finetuned_llama7B/training_curves.png").is_file()


def test_jobs_asked_for_what_they_used(rehearsed):
    """Light rules run on the submit host; only training asks for a GPU (inference runs on the
    CPU here); every job's memory request covers the peak its benchmark measured."""
    work, _ = rehearsed
    ids = job_ids(work)
    ran = {d.name.removeprefix("rule_") for d in (work / ".snakemake" / "slurm_logs").iterdir()}
    assert ran == set(RULES) - LOCAL_RULES, ids
    for name, jobs in ids.items():
        for job in jobs:
            tres = sacct_job(job)["AllocTRES"]
            assert ("gres/gpu=1" in tres) == (name == "finetune"), (name, tres)
    assert len(ids["simple_inference_py"]) == len(ids["simple_inference_ct2"]) == 1
    for name, bench in rehearsal.job_benchmarks(work / rehearsal.RUN).items():
        used = bench["max_rss"]
        [job] = ids[name]
        asked = mem_mb(slurm("sacct", "-j", job, "-X", "-n", "-P", "-o", "ReqMem").strip())
        print(f"{name}: used {used:.0f} MB, asked {asked:.0f} MB")
        assert used <= asked, (name, used, asked)
