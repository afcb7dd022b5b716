"""Resuming a killed finetuning from its newest complete step checkpoint.

OpenNMT-py saves LoRA step checkpoints (LoRA weights, optimizer state and step) with a plain
torch.save, so a job killed while saving leaves a truncated file: each candidate is loaded
before it is trusted. OpenNMT-py cannot resume from a LoRA-only checkpoint, so the base and
the LoRA weights are joined into one checkpoint (the tutorial's `lora_weights.py --action
concat`) that training starts from, keeping the optimizer's state and step.

Step checkpoints are resumed only if they were trained from the same inputs: a stamp next to
them records a fingerprint of the finetuning config and of every file it names (corpora,
vocabulary, base checkpoint, tokenizer), since a rerun may change a file's content, not its path.

The TensorBoard history goes on with the training: the killed run's event files are kept (they
are no Snakemake output, which a failed job would lose), on disk up to its last step checkpoint
(flushed at every report), and cut back to the step resumed from, since the resumed run logs
the steps after it again; a training that starts from step 0 starts without them (the event
files: vicuna.train.events; the flush: vicuna.onmt_fixes.flush_tensorboard_at_each_report).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vicuna.files import atomic_path, write_json
from vicuna.train import events
from vicuna.weights import checkpoint

# Next to the step checkpoints: what they were trained from (see `forget_if_inputs_changed`).
STAMP = ".finetune_inputs.json"
LEGACY_STAMP = ".finetune_config.sha256"  # the config file's sha256 only: not enough to resume
# Inputs above this size (the base checkpoint: 13.5 GB for 7B) are fingerprinted by size and
# mtime_ns instead of hashed, so that a start does not spend a minute reading them; the
# workflow replaces such files whole (a new file, a new mtime), and a false alarm (a `touch`)
# only costs a restart from step 0. Corpora, vocabularies and tokenizers are hashed.
HASH_LIMIT = 1 << 30
# Options of the finetuning config that name a file it reads (the corpora are in `data`).
INPUT_OPTIONS = ("src_vocab", "tgt_vocab", "train_from", "src_subword_model", "tgt_subword_model")


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


def named_inputs(cfg: dict[str, Any]) -> list[str]:
    """Every file the finetuning config reads: corpora, vocabularies, base, tokenizer."""
    paths = [c[key] for c in (cfg.get("data") or {}).values() if isinstance(c, dict)
             for key in ("path_src", "path_tgt") if c.get(key)]
    paths += [cfg[key] for key in INPUT_OPTIONS if cfg.get(key)]
    return list(dict.fromkeys(str(p) for p in paths))  # once each, in order


def file_fingerprint(path: str | Path) -> str:
    """sha256 of the file's bytes; size and mtime_ns above HASH_LIMIT; "missing" if absent."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return "missing"
    if st.st_size > HASH_LIMIT:
        return f"size {st.st_size} mtime_ns {st.st_mtime_ns}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha256 {h.hexdigest()}"


def fingerprints(config_file: str | Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """The stamp's content: the config file's fingerprint and each named input's."""
    return {"config": file_fingerprint(config_file),
            "inputs": {path: file_fingerprint(path) for path in named_inputs(cfg)}}


def changes(stamp: dict[str, Any] | None, current: dict[str, Any], config_file: str | Path
            ) -> str | None:
    """Why step checkpoints written under `stamp` may not be resumed now; None if they may."""
    if stamp is None:
        return f"the step checkpoints have no record of their inputs ({STAMP})"
    changed = [str(config_file)] if stamp.get("config") != current["config"] else []
    old, new = stamp.get("inputs") or {}, current["inputs"]
    changed += [path for path in new if old.get(path) != new[path]]
    changed += [path for path in old if path not in new]  # also shows in the config, but say it
    if not changed:
        return None
    return f"{', '.join(changed)} changed since the step checkpoints were written"


def read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or left half-written by an older version
        return None
    return data if isinstance(data, dict) else None


def forget_if_inputs_changed(config_file: str | Path, cfg: dict[str, Any]) -> None:
    """Step checkpoints trained from another config, corpus, vocabulary, base or tokenizer
    (same paths, new content) are not resumed: they are removed, and the log says why."""
    save_model = cfg["save_model"]
    folder = Path(save_model).parent
    current = fingerprints(config_file, cfg)
    found = step_checkpoints(save_model)
    why = changes(read_stamp(folder / STAMP), current, config_file) if found else None
    if why:
        for _, path in found:
            path.unlink()
        print(f"resume: {why}: starting from step 0", flush=True)
    # Written before training starts: the checkpoints it will write are of these inputs.
    write_json(folder / STAMP, current)
    (folder / LEGACY_STAMP).unlink(missing_ok=True)


def resume_args(config_file: str | Path, cfg: dict[str, Any],
                say: Callable[[str], None] | None = None) -> tuple[list[str], Path | None]:
    """onmt_train options that go on from the newest complete step checkpoint of these inputs,
    and the joined checkpoint they name (to delete after training); ([], None) to start over.
    `say` gets the line that names the step resumed from (the console's, in train.py)."""
    save_model = cfg["save_model"]
    forget_if_inputs_changed(config_file, cfg)
    found = newest_complete(save_model)
    step = found[0] if found else 0
    if step >= cfg["train_steps"]:
        print(f"resume: step {step} already reached train_steps: training again from step 0",
              flush=True)
        step = 0  # finished: train again from the start, as asked
    if log_dir := events.tensorboard_dir(cfg):
        events.keep_events_until(log_dir, step)
    joined = resume_file(save_model)
    if not step:
        remove_resume_file(save_model)  # an earlier resumed run's, killed: the whole base
        return [], None
    lora = found[1]
    resume_checkpoint(cfg["train_from"], lora, joined)
    (say or _log)(f"resume: resuming from step {step} of {cfg['train_steps']} ({save_model}_step_{step}.pt)")
    # keep_states: this config's options, the checkpoint's optimizer state and step.
    return ["-train_from", str(joined), "-reset_optim", "keep_states"], joined


def _log(line: str) -> None:
    print(line, flush=True)


def resume_file(save_model: str | Path) -> Path:
    """The joined checkpoint a resumed training starts from (base + LoRA + optimizer state: the
    size of the base, 13 GB at 7B)."""
    return Path(f"{save_model}_resume.pt")


def remove_resume_file(save_model: str | Path) -> None:
    """Remove the joined checkpoint, saying so: once a training finishes or starts from step 0,
    nothing resumes from it."""
    path = resume_file(save_model)
    if path.exists():
        size = path.stat().st_size
        path.unlink()
        print(f"resume: removed {path} ({size / 2**20:.0f} MB), the checkpoint a stopped run "
              f"resumed from", flush=True)


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
