#!/usr/bin/env python
"""What this CPU offers the engines, measured: its memory-read bandwidth with the benchmark's
threads (a torch sum over a buffer larger than any cache: the speed at which an engine can
stream its weights), the instruction sets the engines' kernels look for, CTranslate2's compute
types, torch's matmul speed in float32 and bfloat16 (lower-precision training), and whether the
kernel lets a process use AMX tiles.

    python benchmarks/cpu_probe.py [--threads 2] [--gb 2]        # prints a JSON object

A model that reads W bytes of weights per generated step cannot generate more than
bandwidth / W steps a second at batch 1 (`limit`); benchmarks/real_width.py reports each
engine's tokens/s as a share of its own limit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "amx_tile", "amx_int8", "amx_bf16")


def bandwidth(threads: int, gb: float = 2.0, repeats: int = 5) -> float:
    """Bytes per second a torch sum reads from a `gb`-GB float32 buffer, best of `repeats`
    (the first pass also faults the pages in: it is not counted)."""
    import torch

    torch.set_num_threads(threads)
    x = torch.ones(int(gb * 1e9) // 4, dtype=torch.float32)
    x.sum()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        best = max(best, x.numel() * 4 / (time.perf_counter() - start))
    return best


MATMUL = (32, 2048, 2048)  # m, k, n: a few tokens through a layer of a 2048-wide model


def matmul_gflops(threads: int, dtype: str, m: int = MATMUL[0], k: int = MATMUL[1],
                  n: int = MATMUL[2]) -> float:
    """GFLOP/s of one torch matmul [m, k] x [k, n] in `dtype`, best of 3: whether the CPU
    computes in that precision (bfloat16 without AVX512-BF16 or AMX is emulated, slowly)."""
    import torch

    torch.set_num_threads(threads)
    a, b = (torch.randn(m, k).to(getattr(torch, dtype)), torch.randn(k, n).to(getattr(torch, dtype)))
    a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def cpu_flags() -> dict[str, bool]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    return {flag: flag in flags for flag in FLAGS}


def model_name() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("model name")), "unknown")


def ct2_compute_types() -> list[str]:
    import ctranslate2

    return sorted(ctranslate2.get_supported_compute_types("cpu"))


def amx_tiles_usable() -> bool:
    """False where the CPU says AMX but the kernel has not enabled its tile data (XTILEDATA,
    xfeature 18): seen on this project's VMs, where llama.cpp's AMX kernels for Q8_0 then die
    of SIGILL (its own check, arch_prctl ARCH_REQ_XCOMP_PERM, returns success there)."""
    import ctypes

    try:
        if "amx_tile" not in Path("/proc/cpuinfo").read_text():
            return True
        supported = ctypes.c_ulong(0)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(158, 0x1022, ctypes.byref(supported)) != 0:  # ARCH_GET_XCOMP_SUPP
            return True
        return bool(supported.value & (1 << 18))
    except OSError:
        return True


def probe(threads: int, gb: float = 2.0) -> dict:
    return {"cpu": model_name(), "flags": cpu_flags(), "ct2_compute_types": ct2_compute_types(),
            "amx_tiles_usable": amx_tiles_usable(), "threads": threads,
            "bandwidth": bandwidth(threads, gb), "buffer_gb": gb,
            "matmul": MATMUL,
            "matmul_gflops": {dtype: matmul_gflops(threads, dtype) for dtype in ("float32", "bfloat16")}}


def run(spec: dict) -> dict:
    """As a child of a benchmark (common.run_child): its own process, its own threads."""
    return probe(spec["threads"], spec.get("gb", 2.0))


def main() -> None:
    import sys

    if len(sys.argv) == 3 and sys.argv[1].endswith(".json"):  # a benchmark's child
        import common

        common.child_main(run)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gb", type=float, default=2.0)
    a = p.parse_args()
    print(json.dumps(probe(a.threads, a.gb), indent=1))


if __name__ == "__main__":
    main()
