"""The workflow's LoRA finetuning measured: scripts/train.py on a config written by
vicuna.train.finetune_config from the 7B config's `train` section (LoRA on the four attention layers
with its rank, alpha and dropout; its 8-bit feed-forward layers), changed only where a CPU
benchmark must (fp32, Adam, a few steps of a fixed number of tokens); and the token sequences
both finetuning engines train on (finetune_peft.py reads the same file).

Tokens/s come from OpenNMT-py's per-step reports (report_every 1): the time between the
report of the last warm-up step and the last step, to the millisecond.
"""

from __future__ import annotations

import random
import re
import sys
import time
from pathlib import Path

import common
import yaml

CONFIG = common.REPO / "configs" / "llama7b-vicuna.yaml"


def train_section(**changes) -> dict:
    """configs/llama7b-vicuna.yaml's `train` section with `changes`."""
    train = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["train"]
    return {**train, **changes}


def write_data(path: Path, tokenizer: str, lines: int, seq_length: int, seed: int = 0) -> None:
    """`lines` different lines (OpenNMT-py drops a line repeated within a batch) that the model
    reads as exactly seq_length tokens, <s> included: words that are one piece each ("▁word"),
    so that a line's pieces are known without the tokenizer's merges across words."""
    from vicuna import tokenizer as tok

    sp = tok.load(tokenizer)
    words = [p[1:] for i in range(sp.get_piece_size()) if (p := sp.id_to_piece(i)).startswith("▁")
             and p[1:].isalpha() and len(p) > 2 and sp.encode(p[1:]) == [i]]
    rng = random.Random(seed)
    pieces = seq_length - 1
    out = []
    for _ in range(lines):
        line = " ".join(rng.choice(words) for _ in range(pieces))
        assert len(sp.encode(line)) == pieces, line
        out.append(line)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def write_config(work: Path, manifest: dict, data: Path, train: dict) -> Path:
    """work/finetune.yaml as the workflow's finetune_config rule writes it."""
    from vicuna.train.finetune_config import finetune_config
    from vicuna.weights.convert import read_shape

    cfg = finetune_config(
        shape=read_shape(manifest["hf"]), vocab_size=manifest["vocab"],
        corpora={"bench": {"path": str(data), "weight": 1}}, valid=None,
        tokenizer_model=manifest["tokenizer"], vocab=manifest["vocab_txt"],
        base_checkpoint=manifest["onmt"], save_model=str(work / "ft" / "model"),
        tensorboard_dir=str(work / "ft" / "tb"), train=train)
    path = work / "finetune.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def benchmark_train(seq_length: int, sequences: int, steps: int, learning_rate: float,
                    **changes) -> dict:
    """The 7B config's training, changed for a CPU benchmark: fp32, Adam, `sequences` lines of
    seq_length tokens a step, no checkpoint before the end."""
    tokens = seq_length * sequences
    return train_section(
        # OpenNMT-py's filtertoolong keeps targets of at most seq_length - 2 pieces (room for
        # <s> and </s>) and ours have seq_length - 1
        seq_length=seq_length + 1, precision="fp32", optim="adam", learning_rate=learning_rate,
        warmup_steps=0, batch_size=tokens, valid_batch_size=tokens, accum_count=1,
        bucket_size=64, num_workers=0, train_steps=steps, save_checkpoint_steps=steps,
        keep_checkpoint=1, valid_steps=steps, report_every=1, seed=1, **changes)


def run(config: Path, warmup: int, steps: int, env: dict, log: Path) -> dict | None:
    """scripts/train.py on `config`; tokens/s of the steps after `warmup`, or None (the log's
    tail printed)."""
    last = warmup + steps
    seconds, peak, status = common.measure([sys.executable, str(common.REPO / "scripts" / "train.py"),
                                            "-config", str(config), "-no_resume"], log, env,
                                           cwd=log.parent)
    text = log.read_text(errors="replace")
    # "[2026-11-29 18:38:13,599 INFO] Step  2/   13; acc: ...; xent: 10.4; ...; bsz:  1024/ 1024/ 4"
    reports = {int(step): (stamp, float(tgt), float(xent)) for stamp, step, xent, tgt in re.findall(
        r"\[(\S+ \S+) INFO\] Step\s+(\d+)/\s*\d+;.*?xent:\s*([\d.]+);.*?bsz:\s*[\d.]+/\s*([\d.]+)/",
        text)}
    if status != 0 or any(s not in reports for s in range(warmup, last + 1)):
        tail = text.strip().splitlines()[-8:]
        print(f"  finetune (ours): failed (exit {status}, {len(reports)} step reports), {log}:\n"
              "    " + "\n    ".join(tail), flush=True)
        return None

    def at(step: int) -> float:
        stamp = reports[step][0]
        return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000

    n = sum(reports[s][1] for s in range(warmup + 1, last + 1))
    measured = at(last) - at(warmup)
    return {"rate": n / measured, "tokens": n, "seconds": measured, "tokens_per_step": n / steps,
            "losses": [reports[s][2] for s in sorted(reports)], "peak": peak, "wall": seconds}
