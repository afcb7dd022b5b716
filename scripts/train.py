#!/usr/bin/env python
"""onmt_train with this project's fixes applied (vicuna.onmt_fixes), the GPUs the job got,
Adam where FusedAdam's Apex is missing, and resumption: a run that was killed goes on from
its newest complete step checkpoint.

    python scripts/train.py -config replicate_vicuna.yaml [other onmt_train options]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from vicuna import onmt_fixes, resume, training


def resume_args(config_file: str, cfg: dict) -> tuple[list[str], Path | None]:
    save_model = cfg["save_model"]
    resume.forget_if_config_changed(config_file, save_model)
    found = resume.newest_complete(save_model)
    if found is None:
        return [], None
    step, lora = found
    if step >= cfg["train_steps"]:
        return [], None  # finished: train again from the start, as asked
    joined = Path(f"{save_model}_resume.pt")
    resume.resume_checkpoint(cfg["train_from"], lora, joined)
    print(f"resume: resuming from step {step} ({save_model}_step_{step}.pt)", flush=True)
    # keep_states: this config's options, the checkpoint's optimizer state and step.
    return ["-train_from", str(joined), "-reset_optim", "keep_states"], joined


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-config", required=True)
    p.add_argument("-no_resume", action="store_true", help="always start from step 0")
    a, rest = p.parse_known_args()
    with open(a.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)

    onmt_fixes.apply()
    from onmt.bin.train import main as onmt_train

    extra = training.gpu_args(torch.cuda.device_count()) + training.optim_args(cfg)
    joined = None
    if not a.no_resume and "-n_sample" not in rest:
        more, joined = resume_args(a.config, cfg)
        extra += more
    sys.argv = ["onmt_train", "-config", a.config, *extra, *rest]
    onmt_train()
    if joined is not None:
        joined.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
