"""finetune_samples: the examples as OpenNMT-py's transforms make them, each newline the LLaMA
byte token, and with answer_loss_only the mark where the answer starts."""

from __future__ import annotations

import pytest
import torch
from helpers import LLAMA_TOKENIZER, NL, flatten, run_script

TASK = ("Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.")






@pytest.mark.skipif(not LLAMA_TOKENIZER.is_file(), reason="real LLaMA tokenizer fixture absent")
def test_samples_show_each_newline_as_the_llama_byte_token(tmp_path):
    """The tutorial's check: with LLaMA's tokenizer, ｟newline｠ reaches the model as <0x0A>."""
    from vicuna.weights import llama

    torch.manual_seed(0)
    args = llama.ModelArgs(dim=16, n_layers=1, n_heads=2, vocab_size=32000, multiple_of=16)
    llama.save_meta(llama.Transformer(args), tmp_path / "meta")
    base = tmp_path / "base.pt"
    run_script("convert_llama.py", "--model_dir", str(tmp_path / "meta"), "--tokenizer_model",
               str(LLAMA_TOKENIZER), "--output", str(base))
    run_script("extract_vocabulary.py", "-model", str(base), "-out_file", str(tmp_path / "vocab.txt"))
    _, data = flatten(tmp_path, "alpaca", [{"instruction": "Give tips.", "input": "",
                                           "output": "1. Eat.\n2. Sleep."}])
    import yaml

    from vicuna.train.finetune_config import finetune_config
    from vicuna.weights.convert import read_shape

    cfg = finetune_config(
        shape=read_shape(tmp_path / "meta"), vocab_size=32000,
        corpora={"alpaca": {"path": str(data), "weight": 1}}, valid=None,
        tokenizer_model=str(LLAMA_TOKENIZER), vocab=str(tmp_path / "vocab.txt"),
        base_checkpoint=str(base), save_model=str(tmp_path / "ft/m"),
        tensorboard_dir=str(tmp_path / "tb"), train=yaml.safe_load(TRAIN))
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    run_script("train.py", "-config", str(tmp_path / "ft.yaml"), "-n_sample", "1",
               "-save_data", str(tmp_path / "samples/sample"))
    sample = next((tmp_path / "samples").rglob("*.src")).read_text(encoding="utf-8")
    assert "▁Below ▁is ▁an ▁instruction" in sample
    assert "<0x0A> <0x0A> ## # ▁Inst ruction : <0x0A> G ive ▁tips . <0x0A>" in sample
    assert NL not in sample


TRAIN = """
lora: {layers: [linear_query], rank: 2, alpha: 4, dropout: 0.0}
quantization: {layers: [], type: ""}
seq_length: 512
precision: fp32
optim: adam
learning_rate: 1.0e-3
warmup_steps: 0
adam_beta2: 0.998
max_grad_norm: 0.0
batch_size: 512
valid_batch_size: 512
accum_count: 1
bucket_size: 64
num_workers: 0
train_steps: 1
save_checkpoint_steps: 1
keep_checkpoint: 1
valid_steps: 1
report_every: 1
seed: 1
answer_loss_only: false
"""


def test_answer_loss_only_marks_single_round_answers(tiny_meta, tmp_path):
    """answer_loss_only: the mark (a pad token) sits where the answer starts in single-round
    examples; multi-round ones get none; training and validation still report a loss."""
    import re

    import yaml

    from vicuna.train.finetune_config import finetune_config
    from vicuna.weights.convert import read_shape

    run_script("extract_vocabulary.py", "-model", str(tiny_meta["onmt"]),
               "-out_file", str(tmp_path / "vocab.txt"))
    (tmp_path / "a").mkdir()
    (tmp_path / "s").mkdir()
    _, alpaca = flatten(tmp_path / "a", "alpaca", [{"instruction": "Repeat these words.",
                                                    "input": "cat dog", "output": "cat dog"}] * 8)
    turns = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}] * 2
    _, sharegpt = flatten(tmp_path / "s", "sharegpt", [{"conversations": turns}] * 8)
    train = yaml.safe_load(TRAIN) | {"answer_loss_only": True, "train_steps": 2, "valid_steps": 2,
                                     "save_checkpoint_steps": 2}
    vocab_size = len((tmp_path / "vocab.txt").read_text().splitlines())
    corpora = {"alpaca": {"path": str(alpaca), "weight": 1},
               "sharegpt": {"path": str(sharegpt), "weight": 1}}
    cfg = finetune_config(
        shape=read_shape(tiny_meta["meta"]), vocab_size=vocab_size, corpora=corpora,
        valid=str(alpaca), tokenizer_model=str(tiny_meta["tokenizer"]), vocab=str(tmp_path / "vocab.txt"),
        base_checkpoint=str(tiny_meta["onmt"]), save_model=str(tmp_path / "ft/m"),
        tensorboard_dir=str(tmp_path / "tb"), train=train)
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg))
    run_script("train.py", "-config", str(tmp_path / "ft.yaml"), "-n_sample", "1",
               "-save_data", str(tmp_path / "samples/sample"))
    single = next((tmp_path / "samples").rglob("alpaca*.src")).read_text(encoding="utf-8")
    multi = next((tmp_path / "samples").rglob("sharegpt*.src")).read_text(encoding="utf-8")
    assert re.search(r": <0x0A> <blank> \S", single), single[-200:]
    assert all(line.count("<blank>") == 1 for line in single.splitlines())
    assert "<blank>" not in multi
    trained = run_script("train.py", "-config", str(tmp_path / "ft.yaml"), "-no_resume")
    valid_ppl = re.findall(r"Validation perplexity: ([\d.]+)", trained.stdout + trained.stderr)
    assert valid_ppl and float(valid_ppl[-1]) > 1.0  # a real loss, not 0/0
