"""flatten_dataset.py: raw alpaca / ShareGPT JSON to OpenNMT-py lines, to the character;
bad records stop the run naming the record, or are skipped and counted; the samples show
what the model reads."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import LLAMA_TOKENIZER, run_script

TASK = ("Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.")
TASK_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
              "further context. Write a response that appropriately completes the request.")
NL = "｟newline｠"


def flatten(tmp_path, fmt, records, *extra, check=True):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(records), encoding="utf-8")
    out = tmp_path / "out.txt"
    result = run_script("flatten_dataset.py", "--format", fmt, *extra, str(src), str(out),
                        check=check)
    return result, out


def test_alpaca_records_with_and_without_input(tmp_path):
    records = [
        {"instruction": "Give three tips for staying healthy.", "input": "",
         "output": "1. Eat well.\n2. Sleep."},
        {"instruction": "Add.", "input": "2 3", "output": "5"},
    ]
    _, out = flatten(tmp_path, "alpaca", records)
    assert out.read_text(encoding="utf-8").splitlines() == [
        f"{TASK}{NL}{NL}### Instruction:{NL}Give three tips for staying healthy.{NL}{NL}"
        f"### Response:{NL}1. Eat well.{NL}2. Sleep.",
        f"{TASK_INPUT}{NL}{NL}### Instruction:{NL}Add.{NL}{NL}### Input:{NL}2 3{NL}{NL}"
        f"### Response:{NL}5",
    ]


def test_sharegpt_three_rounds_in_one_example(tmp_path):
    turns = []
    for i in range(3):
        turns += [{"from": "human", "value": f"q{i}\nmore"}, {"from": "gpt", "value": f"a{i}"}]
    _, out = flatten(tmp_path, "sharegpt", [{"id": "x", "conversations": turns}])
    rounds = [f"### Instruction:{NL}q{i}{NL}more{NL}{NL}### Response:{NL}a{i}" for i in range(3)]
    assert out.read_text(encoding="utf-8").splitlines() == [TASK + NL + NL + (NL + NL).join(rounds)]


def test_line_separators_never_split_an_example(tmp_path):
    records = [{"instruction": "a\rb\u2028c\x85d\u2029e", "input": "", "output": "x\r\ny"}]
    _, out = flatten(tmp_path, "alpaca", records)
    assert len(out.read_bytes().split(b"\n")) == 2  # one line and the final newline
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


def test_json_lines_are_read_too(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"instruction": f"i{i}", "output": "o"}) for i in range(3)))
    run_script("flatten_dataset.py", "--format", "alpaca", str(src), str(tmp_path / "o.txt"))
    assert len((tmp_path / "o.txt").read_text().splitlines()) == 3


BAD = {
    "a missing field": ("alpaca", {"instruction": "x"}, "field 'output' is missing"),
    "an empty answer": ("alpaca", {"instruction": "x", "input": "", "output": " "}, "empty answer"),
    "roles out of order": ("sharegpt", {"conversations": [{"from": "human", "value": "q"},
                                                          {"from": "gpt", "value": "a"},
                                                          {"from": "gpt", "value": "b"}]},
                           "turn 2 is from gpt after gpt"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_record_stops_the_run_naming_file_and_record(tmp_path, case):
    fmt, bad, reason = BAD[case]
    good = {"alpaca": {"instruction": "i", "input": "", "output": "o"},
            "sharegpt": {"conversations": [{"from": "human", "value": "q"},
                                           {"from": "gpt", "value": "a"}]}}[fmt]
    result, out = flatten(tmp_path, fmt, [good, bad], check=False)
    assert result.returncode != 0
    assert "in.json: record 1:" in result.stderr and reason in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.json"]


def test_bad_records_can_be_skipped_and_counted(tmp_path):
    records = [{"instruction": "i", "output": "o"}, {"instruction": "x"}, {"instruction": "y"}]
    report = tmp_path / "report.json"
    result, out = flatten(tmp_path, "alpaca", records, "--on_error", "skip", "--report", str(report))
    assert len(out.read_text().splitlines()) == 1
    counts = json.loads(report.read_text())
    assert counts["kept"] == 1 and counts["skipped"] == 2
    assert counts["skipped_by_reason"] == {"field 'output' is missing or not a string": 2}


def test_bytes_that_are_not_utf8_are_refused(tmp_path):
    src = tmp_path / "in.json"
    src.write_bytes(b'[{"instruction": "caf\xe9", "output": "o"}]')
    result = run_script("flatten_dataset.py", "--format", "alpaca", str(src),
                        str(tmp_path / "o.txt"), check=False)
    assert result.returncode != 0 and "not UTF-8" in result.stderr
    assert not (tmp_path / "o.txt").exists()


@pytest.mark.skipif(not LLAMA_TOKENIZER.is_file(), reason="real LLaMA tokenizer fixture absent")
def test_samples_show_each_newline_as_the_llama_byte_token(tmp_path):
    """The tutorial's check: with LLaMA's tokenizer, ｟newline｠ reaches the model as <0x0A>."""
    from vicuna import llama

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

    from vicuna.convert import read_shape
    from vicuna.finetune_config import finetune_config

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


def test_fifty_thousand_records_give_fifty_thousand_lines(tmp_path):
    from vicuna import synthetic

    records = synthetic.generate(3, 50_000, 1, 1, 1)["alpaca"]
    _, out = flatten(tmp_path, "alpaca", records)
    assert sum(1 for _ in out.open(encoding="utf-8")) == 50_000


def test_answer_loss_only_marks_single_round_answers(tiny_meta, tmp_path):
    """answer_loss_only: the mark (a pad token) sits where the answer starts in single-round
    examples; multi-round ones get none; training and validation still report a loss."""
    import re

    import yaml

    from vicuna.convert import read_shape
    from vicuna.finetune_config import finetune_config

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
