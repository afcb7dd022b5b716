#!/usr/bin/env python
"""onmt_train with this project's fixes applied (vicuna.onmt_fixes), the GPUs the job got,
and Adam where FusedAdam's Apex is missing.

    python scripts/train.py -config replicate_vicuna.yaml [other onmt_train options]
"""

from __future__ import annotations

import argparse
import sys

import torch
import yaml

from vicuna import onmt_fixes, training


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-config", required=True)
    a, rest = p.parse_known_args()
    with open(a.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)

    onmt_fixes.apply()
    from onmt.bin.train import main as onmt_train

    extra = training.gpu_args(torch.cuda.device_count()) + training.optim_args(cfg)
    sys.argv = ["onmt_train", "-config", a.config, *extra, *rest]
    onmt_train()


if __name__ == "__main__":
    main()
