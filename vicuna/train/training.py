"""onmt_train arguments decided when the training job starts, on the node that runs it."""

from __future__ import annotations

import importlib.util
import sys


def gpu_args(device_count: int) -> list[str]:
    """world_size / gpu_ranks follow the GPUs this job can see (none on a CPU node)."""
    if device_count == 0:
        return ["-world_size", "1"]
    return ["-world_size", str(device_count), "-gpu_ranks", *map(str, range(device_count))]


def optim_args(cfg: dict, apex_available: bool | None = None) -> list[str]:
    """`optim: fusedadam` needs NVIDIA Apex built with its deprecated fused Adam; OpenNMT-py
    fails at the first step without it. Fall back to Adam (with fp16, OpenNMT-py's GradScaler)."""
    if cfg.get("optim") != "fusedadam":
        return []
    if apex_available is None:
        apex_available = importlib.util.find_spec("apex") is not None
    if apex_available:
        return []
    print("warning: optim fusedadam needs NVIDIA Apex, which is not installed: using adam",
          file=sys.stderr)
    return ["-optim", "adam"]
