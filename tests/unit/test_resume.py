"""Resuming training (vicuna.train.resume): the newest step checkpoint of the same inputs, never one of
other inputs, nor a truncated one."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
import yaml

from vicuna.train import resume

SAVE_MODEL = "finetuned_llama-tiny/llama-tiny-vicuna-onmt"


VOCAB = {"src": ["<unk>", "<s>", "</s>", "<blank>"], "tgt": ["<unk>", "<s>", "</s>", "<blank>"],
         "data_task": "lm", "decoder_start_token": "<s>"}


# Each file the finetuning config names, by its option (as in replicate_vicuna.yaml).
INPUTS = {
    "corpus": "dataAI/alpaca_clean.txt",
    "valid": "dataAI/valid.txt",
    "src_vocab": "vocab.txt",
    "train_from": "llama-tiny-vicuna-onmt.pt",
    "src_subword_model": "llama/tokenizer.model",
}


def lora_step(step: int) -> dict:
    """A LoRA step checkpoint as OpenNMT-py saves it, in miniature."""
    return {"model": {"decoder.transformer_layers.0.self_attn.linear_query.lora_A":
                      torch.full((2, 4), float(step))},
            "generator": None, "vocab": VOCAB, "opt": argparse.Namespace(lora_rank=2),
            "optim": {"training_step": step + 1}}


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finetuning folder with its inputs and config, as the workflow leaves it (cwd)."""
    monkeypatch.chdir(tmp_path)
    for name in ("corpus", "valid", "src_vocab", "src_subword_model"):
        Path(INPUTS[name]).parent.mkdir(parents=True, exist_ok=True)
        Path(INPUTS[name]).write_text(f"{name} as first written\n")
    base = {"model": {"decoder.layer_norm.weight": torch.ones(4)},
            "generator": {"weight": torch.zeros(4, 4), "bias": torch.zeros(4)},
            "vocab": VOCAB, "opt": argparse.Namespace(lora_rank=0)}
    torch.save(base, INPUTS["train_from"])
    cfg = {"data": {"alpaca": {"path_src": INPUTS["corpus"], "weight": 1},
                    "valid": {"path_src": INPUTS["valid"]}},
           "src_vocab": INPUTS["src_vocab"], "tgt_vocab": INPUTS["src_vocab"],
           "src_subword_model": INPUTS["src_subword_model"],
           "tgt_subword_model": INPUTS["src_subword_model"],
           "train_from": INPUTS["train_from"], "save_model": "finetuned/m", "train_steps": 1000}
    Path("replicate_vicuna.yaml").write_text(yaml.safe_dump(cfg))
    Path("finetuned").mkdir()
    return tmp_path


def config() -> dict:
    return yaml.safe_load(Path("replicate_vicuna.yaml").read_text())


def killed_run(*steps: int) -> None:
    """A first run that wrote its stamp and these step checkpoints, then was killed."""
    assert resume.resume_args("replicate_vicuna.yaml", config()) == ([], None)
    for step in steps:
        torch.save(lora_step(step), f"finetuned/m_step_{step}.pt")


def steps_left() -> list[int]:
    return [step for step, _ in resume.step_checkpoints("finetuned/m")]


def test_named_inputs_are_every_file_the_config_reads(run):
    assert resume.named_inputs(config()) == [INPUTS["corpus"], INPUTS["valid"], INPUTS["src_vocab"],
                                             INPUTS["train_from"], INPUTS["src_subword_model"]]


def test_unchanged_inputs_resume_from_the_newest_step(run, capsys):
    killed_run(200, 400)
    args, joined = resume.resume_args("replicate_vicuna.yaml", config())
    assert args == ["-train_from", "finetuned/m_resume.pt", "-reset_optim", "keep_states"]
    ck = torch.load(joined, weights_only=False)
    assert ck["optim"]["training_step"] == 401
    assert set(ck["model"]) == {"decoder.layer_norm.weight",
                                "decoder.transformer_layers.0.self_attn.linear_query.lora_A"}
    assert ck["generator"]["weight"].shape == (4, 4)
    assert "resume: resuming from step 400" in capsys.readouterr().out
    assert steps_left() == [400, 200]


@pytest.mark.parametrize("changed", ["corpus", "valid", "src_vocab", "train_from",
                                     "src_subword_model", "config"])
def test_changed_input_discards_the_step_checkpoints(run, capsys, changed):
    killed_run(200, 400)
    if changed == "config":
        Path("replicate_vicuna.yaml").write_text(yaml.safe_dump({**config(), "train_steps": 2000}))
        path = "replicate_vicuna.yaml"
    elif changed == "train_from":
        path = INPUTS[changed]
        torch.save({**torch.load(path, weights_only=False), "note": "a new base"}, path)
    else:
        path = INPUTS[changed]
        Path(path).write_text(f"{changed} rewritten, same path\n")
    capsys.readouterr()
    assert resume.resume_args("replicate_vicuna.yaml", config()) == ([], None)
    out = capsys.readouterr().out
    assert (f"resume: {path} changed since the step checkpoints were written: "
            f"starting from step 0") in out
    assert "resuming" not in out
    assert steps_left() == []


def test_after_a_start_over_the_new_inputs_resume(run, capsys):
    killed_run(200)
    Path(INPUTS["corpus"]).write_text("new data\n")
    assert resume.resume_args("replicate_vicuna.yaml", config()) == ([], None)  # starts over
    torch.save(lora_step(200), "finetuned/m_step_200.pt")  # ... and is killed again
    args, _ = resume.resume_args("replicate_vicuna.yaml", config())
    assert args[:2] == ["-train_from", "finetuned/m_resume.pt"]
    assert "resuming from step 200" in capsys.readouterr().out


def test_no_resume_file_outlives_a_start_from_step_0(run, capsys):
    """Killed, resumed (the joined checkpoint written: the whole base), killed again; then a
    corpus changes and the next run starts from step 0: the joined checkpoint goes at once,
    and the log says what was removed."""
    killed_run(200)
    resume.resume_args("replicate_vicuna.yaml", config())
    joined = Path("finetuned/m_resume.pt")
    assert joined.is_file()
    Path(INPUTS["corpus"]).write_text("new data\n")
    capsys.readouterr()
    assert resume.resume_args("replicate_vicuna.yaml", config()) == ([], None)
    assert not joined.exists()
    assert "resume: removed finetuned/m_resume.pt (" in capsys.readouterr().out
    resume.remove_resume_file("finetuned/m")  # as a finished training calls it: nothing left
    assert capsys.readouterr().out == ""


def test_step_checkpoints_without_a_stamp_are_not_resumed(run, capsys):
    torch.save(lora_step(200), "finetuned/m_step_200.pt")
    Path("finetuned", resume.LEGACY_STAMP).write_text("0" * 64 + "\n")  # an older version's
    assert resume.resume_args("replicate_vicuna.yaml", config()) == ([], None)
    assert "have no record of their inputs" in capsys.readouterr().out
    assert steps_left() == []
    assert not Path("finetuned", resume.LEGACY_STAMP).exists()
    assert Path("finetuned", resume.STAMP).is_file()


def test_a_truncated_fake_checkpoint_is_skipped(run, capsys):
    killed_run(200)
    whole = Path("finetuned/m_step_200.pt").read_bytes()
    Path("finetuned/m_step_400.pt").write_bytes(whole[: len(whole) // 2])  # killed while saving
    args, _ = resume.resume_args("replicate_vicuna.yaml", config())
    out = capsys.readouterr().out
    assert "skipping finetuned/m_step_400.pt" in out and "resuming from step 200" in out


def test_finished_training_starts_again(run):
    killed_run(1000)
    assert resume.resume_args("replicate_vicuna.yaml", config()) == ([], None)


def test_large_files_are_fingerprinted_by_size_and_mtime(run, monkeypatch):
    monkeypatch.setattr(resume, "HASH_LIMIT", 10)
    base = Path(INPUTS["train_from"])
    st = base.stat()
    assert resume.file_fingerprint(base) == f"size {st.st_size} mtime_ns {st.st_mtime_ns}"
    os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # rewritten: a new mtime
    assert resume.file_fingerprint(base) != f"size {st.st_size} mtime_ns {st.st_mtime_ns}"
    assert resume.file_fingerprint(Path("small.txt")) == "missing"
    Path("small.txt").write_text("x")
    monkeypatch.setattr(resume, "HASH_LIMIT", 1 << 30)
    assert resume.file_fingerprint(Path("small.txt")).startswith("sha256 ")
