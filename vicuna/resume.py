"""Resuming a killed finetuning from its newest complete step checkpoint.

OpenNMT-py saves LoRA step checkpoints (LoRA weights, optimizer state and step) with a plain
torch.save, so a job killed while saving leaves a truncated file: each candidate is loaded
before it is trusted. OpenNMT-py cannot resume from a LoRA-only checkpoint, so the base and
the LoRA weights are joined into one checkpoint (the tutorial's `lora_weights.py --action
concat`) that training starts from, keeping the optimizer's state and step.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from vicuna import checkpoint
from vicuna.files import atomic_path

STAMP = ".finetune_config.sha256"


def step_checkpoints(save_model: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every `<save_model>_step_N.pt`, newest first."""
    prefix = Path(save_model)
    pattern = re.compile(re.escape(prefix.name) + r"_step_(\d+)\.pt$")
    found = [(int(m.group(1)), p) for p in prefix.parent.glob(f"{prefix.name}_step_*.pt")
             if (m := pattern.match(p.name))]
    return sorted(found, reverse=True)


def newest_complete(save_model: str | Path) -> tuple[int, dict] | None:
    """The newest step checkpoint that loads, with its content; truncated ones are skipped."""
    for step, path in step_checkpoints(save_model):
        try:
            ck = checkpoint.load(path)
        except Exception as e:  # a truncated zip raises RuntimeError, EOFError, ...
            print(f"resume: skipping {path}: unreadable ({type(e).__name__})")
            continue
        if isinstance(ck, dict) and ck.get("model") and ck.get("optim"):
            return step, ck
        print(f"resume: skipping {path}: no model or optimizer state")
    return None


def fingerprint(config_file: str | Path) -> str:
    return hashlib.sha256(Path(config_file).read_bytes()).hexdigest()


def forget_if_config_changed(config_file: str | Path, save_model: str | Path) -> None:
    """Step checkpoints of another finetuning config are not resumed: they are removed."""
    stamp = Path(save_model).parent / STAMP
    current = fingerprint(config_file)
    if stamp.is_file() and stamp.read_text().strip() != current:
        for _, path in step_checkpoints(save_model):
            path.unlink()
        print(f"resume: {config_file} changed since the last run: starting from step 0")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current + "\n")


def resume_checkpoint(base_checkpoint: str | Path, lora: dict, output: str | Path) -> None:
    """Base weights + LoRA weights + the LoRA checkpoint's optimizer state, in one file."""
    base = checkpoint.load(base_checkpoint)
    joined = {
        "model": {**base["model"], **lora["model"]},
        "generator": base["generator"],
        "vocab": base["vocab"],
        "opt": lora["opt"],
        "optim": lora["optim"],
    }
    with atomic_path(output) as tmp:
        torch.save(joined, tmp)
