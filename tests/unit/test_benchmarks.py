"""benchmarks/ as users run it (`python benchmarks/<name>.py`): every script starts from its
own folder with no sys.path edits, the greedy settings come from config.yaml's `inference`
keys through vicuna.serve.engines.options_file, and the weight bytes a decoding step reads (the
bandwidth limit of peers.py) match transformers' own LLaMA at 7B's width. No timings: the
figures are BENCHMARKS.md's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = ["peers.py", "inference_speed.py", "api_load.py", "convert_memory.py",
           "download_throughput.py", "flatten_speed.py", "workflow_time.py", "job_memory.py",
           "cpu_probe.py", "mmlu_speed.py"]


@pytest.fixture
def bench(monkeypatch):
    """What `python benchmarks/x.py` has on sys.path: the benchmarks' folder."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import common
    import peers_report

    return common, peers_report


def test_no_benchmark_edits_sys_path():
    edits = [f"{p.name}:{n}" for p in BENCHMARKS.glob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"sys\.path\.(insert|append)|sys\.path\s*=", line)]
    assert edits == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_starts_from_its_folder(script):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], cwd=REPO.parent,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_greedy_options_come_from_the_config(bench):
    common, _ = bench
    from vicuna.serve import decoding, engines

    config = yaml.safe_load((REPO / "config.yaml").read_text())["inference"]
    inference = common.greedy(batch_size=8, cpu_threads=1)
    assert inference["random_sampling_topk"] == decoding.GREEDY
    for key in ("beam_size", "random_sampling_topp", "random_sampling_temp", "seed", "device",
                "precision", "compute_type"):
        assert inference[key] == config[key], key
    for mode in engines.REGISTRY:
        opts = common.options(mode, "model", "tok.model", inference, forced=32)
        written = engines.options_file(mode, "model", "tok.model", {**inference, "max_length": 32})
        assert opts == {**written, "min_length": 32}


def test_streamed_bytes_at_7b_width_match_transformers(bench):
    """Every weight but the embedding table's (one row of it) is read at each step."""
    _, peers_report = bench
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                         num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=32,
                         tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    params = dict(model.named_parameters())
    manifest = {"dim": 4096, "layers": 2, "vocab": 32000,
                "params": sum(p.numel() for p in params.values())}
    assert 660e6 < manifest["params"] < 670e6  # the 667M
    matrices = sum(p.numel() for name, p in params.items()
                   if p.dim() == 2 and "embed_tokens" not in name)
    norms = sum(p.numel() for p in params.values() if p.dim() == 1)
    assert peers_report.streamed_bytes(manifest, 1) == matrices + 4096 + 4 * norms
    assert peers_report.streamed_bytes(manifest, 4) == 4 * (matrices + 4096 + norms)


def test_job_memory_sees_the_peak_of_a_job_that_ends_between_samples(tmp_path, monkeypatch):
    """A job's Python process writes its exact high-water mark at exit (peak_rss/sitecustomize.py),
    keyed by its log: a 300 MB peak held for no time at all, which a sampler would miss. Its
    own: started straight from this test's process, it would inherit pytest's getrusage peak
    (gigabytes in a full run)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import job_memory

    work = tmp_path / "layers1"
    logs = work / job_memory.rehearsal.RUN / "logs"
    logs.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(job_memory.PEAK_RSS),
           "VICUNA_PEAK_RSS": str(tmp_path / f"layers1.{job_memory.PEAKS}")}
    burst = "b = b'x' * (300 * 2**20); del b"
    with open(logs / "extract_vocabulary.log", "w") as log:
        subprocess.run([sys.executable, "-c", burst], stderr=log, env=env, check=True)
    # a small job started straight from a big process (600 MB) is measured as small
    parent = ("import subprocess, sys; b = b'x' * (600 * 2**20); "
              f"subprocess.run([sys.executable, '-c', 'pass'], stderr=open({str(logs)!r} "
              "+ '/evaluate.log', 'w'), check=True)")
    subprocess.run([sys.executable, "-c", parent], stderr=subprocess.PIPE, env=env, check=True)
    peaks = job_memory.exact_peaks(work)
    assert sorted(peaks) == ["evaluate", "extract_vocabulary"]  # the parent's stderr is no log
    assert 300 < peaks["extract_vocabulary"] < 400
    assert peaks["evaluate"] < 100
    # without VICUNA_PEAK_RSS the hook records nothing
    (tmp_path / f"layers1.{job_memory.PEAKS}").unlink()
    subprocess.run([sys.executable, "-c", burst], env={"PYTHONPATH": env["PYTHONPATH"]},
                   check=True)
    assert not (tmp_path / f"layers1.{job_memory.PEAKS}").exists()
