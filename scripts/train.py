#!/usr/bin/env python
"""onmt_train with this project's fixes applied (vicuna.onmt_fixes), the GPUs the job got,
Adam where FusedAdam's Apex is missing, and resumption: a run that was killed goes on from
its newest complete step checkpoint, if the config and every file it names are unchanged
(vicuna.resume).

    python scripts/train.py -config replicate_vicuna.yaml [other onmt_train options]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from vicuna import onmt_fixes, resume, training


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-config", required=True)
    p.add_argument("-no_resume", action="store_true", help="always start from step 0")
    a, rest = p.parse_known_args()
    if not Path(a.config).is_file():
        sys.exit(f"error: {a.config}: no such file (the finetuning config)")
    with open(a.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)

    try:
        onmt_fixes.apply()
    except ValueError as e:
        sys.exit(f"error: {e}")
    from onmt.bin.train import main as onmt_train

    extra = training.gpu_args(torch.cuda.device_count()) + training.optim_args(cfg)
    joined = None
    if not a.no_resume and "-n_sample" not in rest:
        more, joined = resume.resume_args(a.config, cfg)
        extra += more
    sys.argv = ["onmt_train", "-config", a.config, *extra, *rest]
    onmt_train()
    if joined is not None:
        joined.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
