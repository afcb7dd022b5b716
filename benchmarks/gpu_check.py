"""The GPU path in one run, for a machine with a CUDA GPU: the 7B rehearsal (vicuna/testing/rehearsal.py:
configs/llama7b-vicuna.yaml plus a shrinking override, a 7B-shaped base with a few layers and
the real LLaMA tokenizer) with training on `cuda` in fp16 with bitsandbytes 8-bit feed-forward
layers and LoRA, inference in both modes on `cuda` (CTranslate2 with the release's
int8_float16), greedy so that py and ct2 can be compared. Writes gpu_check.json and
gpu_check.md to --out: tokens/s of training and of both inference modes, py/ct2 agreement,
what each job took.

    bash benchmarks/gpu_check.sh [OUT_DIR]      # installs, then runs this
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

from vicuna.testing import rehearsal

GPU = {
    "train": {"precision": "fp16", "optim": "fusedadam", "batch_size": 500, "accum_count": 4,
              "train_steps": 20, "save_checkpoint_steps": 10, "valid_steps": 20,
              "report_every": 5},
    "inference": {"device": "cuda", "precision": "fp16", "compute_type": "default",
                  "batch_size": 5, "max_length": 64, "random_sampling_topk": 1,
                  "random_sampling_topp": 0.0, "random_sampling_temp": 1.0},
}


def finetune_figures(log: str) -> dict:
    """tokens/s of the last reported steps, and what the log says of the layers."""
    rates = [int(m) for m in re.findall(r"(\d+)/\s*\d+ tok/s", log)]
    int8 = re.search(r"Non trainable parameters = \{.*'torch\.int8': (\d+)", log)
    return {"tokens_per_second": rates[-1] if rates else None,
            "tokens_per_second_reported": rates,
            "int8_parameters": int(int8.group(1)) if int8 else 0,
            "linear8bit_layers": log.count("Linear8bitLt("),
            "fp16": "model_dtype: fp16" in log or "'torch.float16'" in log}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/gpu_check")
    p.add_argument("--layers", type=int, default=2, help="layers of the 7B-shaped base")
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible to torch: this check is for a GPU machine")
    if not rehearsal.LLAMA_TOKENIZER.is_file():
        sys.exit(f"error: {rehearsal.LLAMA_TOKENIZER}: the real LLaMA tokenizer is needed")
    a.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work = root / "clone"
    start = time.monotonic()
    proc = rehearsal.run_locally(root, work, n_examples=200, n_layers=a.layers, changes=GPU)
    (a.out / "snakemake.log").write_text(proc.stdout + proc.stderr)
    run = work / rehearsal.RUN
    for log in (run / "logs").rglob("*.log"):
        (a.out / log.name).write_text(log.read_text(errors="replace"))
    result: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "layers": a.layers, "wall_seconds": round(time.monotonic() - start, 1),
                    "workflow_ok": proc.returncode == 0}
    if proc.returncode == 0:
        result["finetune"] = finetune_figures((run / "logs/finetune.log").read_text())
        for mode in ("py", "ct2"):
            pred = json.loads((run / f"outputs/predictions_{mode}.json").read_text())
            result[f"inference_{mode}"] = {k: pred[k] for k in
                                           ("seconds", "generated_tokens", "tokens_per_second")}
        ct2_log = (run / "logs/simple_inference_ct2.log").read_text()
        result["ct2_int8_float16_on_cuda"] = "automatically converted" not in ct2_log
        result["py_ct2_agreement"] = json.loads((run / "outputs/eval.json").read_text())[
            "py_ct2_agreement"]
        result["jobs"] = {name: {"seconds": job["s"], "max_rss_mb": job["max_rss"]}
                          for name, job in rehearsal.job_benchmarks(run).items()}
    (a.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# GPU check: {result['gpu']}, torch {result['torch']}, {a.layers} layers of 7B",
             "", f"workflow ok: {result['workflow_ok']}, {result['wall_seconds']} s wall"]
    if proc.returncode == 0:
        f = result["finetune"]
        lines += [f"- training (fp16, LoRA, bnb 8-bit FFN: {f['linear8bit_layers']} layers, "
                  f"{f['int8_parameters']:,} int8 weights): {f['tokens_per_second']} tokens/s",
                  f"- inference py: {result['inference_py']['tokens_per_second']} tokens/s",
                  f"- inference ct2 (int8_float16 on CUDA: {result['ct2_int8_float16_on_cuda']}): "
                  f"{result['inference_ct2']['tokens_per_second']} tokens/s",
                  f"- greedy py/ct2 agreement: {result['py_ct2_agreement']}"]
    else:
        lines += ["", "```", (proc.stdout + proc.stderr)[-4000:], "```"]
    (a.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(0 if proc.returncode == 0 else 1)


if __name__ == "__main__":
    main()
