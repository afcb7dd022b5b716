"""Shared fixtures: one run of the workflow on the tiny default, a random tiny LLaMA; and a
check, once all tests have run, that no test left a port listening (helpers.py: every process
a test starts is stopped with its children)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from helpers import call_script, clone, listening_ports, make_lora, snakemake, socket_owners
from http_server import server  # noqa: F401 (a fixture: a real HTTP server on 127.0.0.1)
from slurm_cluster import cluster  # noqa: F401 (a fixture for the SLURM tests)


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

    from vicuna import prompt, tokenizer
    from vicuna.tiny import synthetic
    from vicuna.weights import llama

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
    call_script("convert_llama.py", "--model_dir", str(root / "meta"), "--tokenizer_model",
               str(root / "tokenizer.model"), "--output", str(onmt))
    return {"root": root, "meta": root / "meta", "tokenizer": root / "tokenizer.model",
            "onmt": onmt}


@pytest.fixture(scope="session")
def tiny_options(tiny_meta, tmp_path_factory) -> dict:
    """translate_opts_<mode>.yaml of tiny_meta's model, greedy, written as the workflow does:
    {"py": file, "ct2": file, "gguf": file, "ct2_release": its float32 release,
    "gguf_release": its F32 GGUF, "max_length": 16}."""
    root = tmp_path_factory.mktemp("tiny_options")
    ct2, gguf = root / "tiny-ct2", root / "tiny-f32.gguf"
    call_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(ct2),
               "--quantization", "float32")
    call_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(gguf),
               "--format", "gguf", "--gguf_type", "f32", "--tokenizer_model",
               str(tiny_meta["tokenizer"]))
    decoding = {"device": "cpu", "precision": "fp32", "compute_type": "default",
                "cpu_threads": 1, "batch_size": 16, "beam_size": 1, "max_length": 16,
                "random_sampling_topk": 1, "random_sampling_topp": 0.0,
                "random_sampling_temp": 1.0, "seed": 1234}
    files: dict = {"ct2_release": ct2, "gguf_release": gguf, "max_length": decoding["max_length"]}
    for mode, model in (("ct2", ct2), ("py", tiny_meta["onmt"]), ("gguf", gguf)):
        files[mode] = root / f"translate_opts_{mode}.yaml"
        call_script("write_translate_opts.py", "--mode", mode, "--model", str(model),
                   "--tokenizer_model", str(tiny_meta["tokenizer"]),
                   "--inference_json", json.dumps(decoding), "--output", str(files[mode]))
    return files


@pytest.fixture(scope="module")
def base(tiny_meta) -> dict:
    """tiny_meta's converted checkpoint, loaded."""
    from vicuna.weights import checkpoint

    return checkpoint.load(tiny_meta["onmt"], kind="full")


@pytest.fixture(scope="module")
def bad_files(tiny_meta, base, tmp_path_factory) -> dict[str, Path]:
    """One file of each wrong kind a user can give where a checkpoint is expected."""
    import torch

    root = tmp_path_factory.mktemp("bad_checkpoints")
    data = tiny_meta["onmt"].read_bytes()
    paths = {name: root / f"{name}.pt" for name in
             ("empty", "truncated", "text", "meta", "lora", "pickle_list")}
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["text"].write_text("model: not a checkpoint\n")
    paths["meta"].write_bytes((tiny_meta["meta"] / "consolidated.00.pth").read_bytes())
    torch.save(make_lora(base), paths["lora"])
    torch.save([1, 2, 3], paths["pickle_list"])
    paths["missing"] = root / "missing.pt"
    return paths


# --- No listening port left behind ------------------------------------------------------------

def pytest_sessionstart(session) -> None:
    session.config._ports_before = listening_ports()


def pytest_sessionfinish(session, exitstatus) -> None:
    before = getattr(session.config, "_ports_before", None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    deadline = time.monotonic() + 15  # servers stopped at the very end may still be closing
    while (left := {p: i for p, i in listening_ports().items() if before.get(p) != i}) and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        owners = socket_owners(set(left.values()))
        lines = [f"  port {port}: {owners.get(inode, 'owner not visible')}"
                 for port, inode in sorted(left.items())]
        session.config.get_terminal_writer().line(
            "tests left ports listening (a process outlived its test):\n" + "\n".join(lines),
            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
