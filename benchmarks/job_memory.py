"""Peak resident memory of each model-loading job against the size of the checkpoint it loads,
on 7B-shaped checkpoints (dim 4096, FFN 11008, LLaMA's 32,000-piece vocabulary) with 1, 2 and 4
layers: the workflow itself, run locally on the 7B config plus the rehearsal's shrinking override
(vicuna/testing/rehearsal.py, with a held-out corpus so that `evaluate` loads both models), CPU only.
Each rule's peak is the larger of its Snakemake benchmark's max_rss (the job's processes
together, sampled) and the exact high-water mark of its Python processes (VmHWM, recorded
at exit by peak_rss/sitecustomize.py): Snakemake samples every 0.5 s, and a job of 4 s can end
between samples (extract_vocabulary sampled at 291 MB on one machine, 371 on another). The fit
is peak = a x size + b per rule, written to benchmarks/job_memory.json, which
rules/resources.smk's MEMORY_FIT reads (tests/unit/test_resources.py checks the rules use it).

    .venv/bin/python benchmarks/job_memory.py [--layers 1 2 4] [--keep | --reuse DIR]
    .venv/bin/python benchmarks/job_memory.py --only simple_inference_gguf   # one rule's fit

`--only` measures the named rules alone (the runs make only their outputs, ONLY_TARGETS) and
keeps the other rules' fits of the JSON as they are.

Needs the real LLaMA tokenizer (../shared/fixtures/llama-tokenizer/tokenizer.model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

from vicuna.testing import rehearsal

STEP = "finetuned_llama7B/llama7B-vicuna-onmt_step_4"
GGUF_TYPES = ("f16", "q8_0", "q4_k_m")  # the 7B config's release.gguf
# rule (benchmark file) -> the checkpoint its memory is sized from, as in the rules
LOADS = {
    "convert_llama": "llama/7B",
    "extract_vocabulary": "llama7B-vicuna-onmt.pt",
    "finetune": "llama7B-vicuna-onmt.pt",
    "merge_lora": "llama7B-vicuna-onmt.pt",
    "release_ct2": f"{STEP}.concat.pt",
    "release_hf": f"{STEP}.concat.pt",
    "release_hf_base": "llama7B-vicuna-onmt.pt",
    "release_peft": f"{STEP}.pt",  # the LoRA step checkpoint alone: a few MB
    "simple_inference_py": f"{STEP}.concat.pt",
    "simple_inference_ct2": f"{STEP}.concat_CT2",
    # llama.cpp memory-maps the GGUF of inference.gguf_type (q8_0), and adds its KV cache
    "simple_inference_gguf": f"{STEP}.concat-q8_0.gguf",
    "heldout_loss": f"{STEP}.concat.pt",
    # without references (as here and in the 7B config) it loads no model; with them it runs
    # the py engine on the base, sized as simple_inference_py
    "evaluate": "llama7B-vicuna-onmt.pt",
    "mmlu": f"{STEP}.concat.pt",  # the base, then the finetuned model: one at a time
    # one job per GGUF type; the rule asks for the largest of them (release_gguf, below)
    **{f"release_gguf_{kind}": f"{STEP}.concat.pt" for kind in GGUF_TYPES},
}
# rule -> what a run makes to measure it alone (--only)
ONLY_TARGETS = {f"simple_inference_{mode}": f"{rehearsal.RUN}/outputs/predictions_{mode}.txt"
                for mode in ("py", "ct2", "gguf")}
PEAK_RSS = Path(__file__).resolve().parent / "peak_rss"  # its sitecustomize.py
PEAKS = "peak_rss.jsonl"


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def measure(n_layers: int, root: Path, only: list[str] | None = None
            ) -> dict[str, tuple[float, float, float]]:
    """rule -> (checkpoint MB, peak RSS MB, seconds) for a base of `n_layers` layers (a run
    already in root/layers<n> is read again, not repeated); `only`: those rules alone."""
    work = root / f"layers{n_layers}"
    if not work.is_dir():
        run(n_layers, root, work, tuple(ONLY_TARGETS[r] for r in only) if only else ("all",))
    return read(work, only)


def run(n_layers: int, root: Path, work: Path, targets: tuple[str, ...] = ("all",)) -> None:
    env = dict(os.environ, VICUNA_PEAK_RSS=str(root / f"{work.name}.{PEAKS}"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(PEAK_RSS),
                                                        os.environ.get("PYTHONPATH")])))
    proc = rehearsal.run_locally(root, work, n_layers=n_layers, heldout=True, env=env,
                                 targets=targets)
    if proc.returncode:
        sys.exit(f"{n_layers} layers: the workflow failed:\n{proc.stderr[-3000:]}")


def exact_peaks(work: Path) -> dict[str, float]:
    """Job (its log's name, as its benchmark file's) -> the largest high-water mark among the
    Python processes that wrote to that log, in MB."""
    peaks: dict[str, float] = {}
    lines = (work.parent / f"{work.name}.{PEAKS}").read_text().splitlines()
    # the records hold absolute paths (--reuse may be relative)
    logs = work.resolve() / rehearsal.RUN / "logs"
    for record in map(json.loads, lines):
        log = Path(record["stderr"])
        if log.suffix == ".log" and log.parent == logs:  # not Snakemake's own
            peaks[log.stem] = max(peaks.get(log.stem, 0.0), record["max_rss_mb"])
    return peaks


def read(work: Path, only: list[str] | None = None) -> dict[str, tuple[float, float, float]]:
    jobs, exact = rehearsal.job_benchmarks(work / rehearsal.RUN), exact_peaks(work)
    run = work / rehearsal.RUN  # the base is read from llama/, the rest is the run's
    measured = {rule: (size_mb(work / loads if loads.startswith("llama/") else run / loads),
                       max(jobs[rule]["max_rss"], exact.get(rule, 0.0)), jobs[rule]["s"])
                for rule, loads in LOADS.items() if not only or rule in only}
    if only:
        return measured
    # release_gguf sizes every type's job alike: by the largest (the same checkpoint's size)
    types = [measured[f"release_gguf_{kind}"] for kind in GGUF_TYPES]
    measured["release_gguf"] = (types[0][0], max(t[1] for t in types), max(t[2] for t in types))
    return measured


# Sizes closer than this say nothing of a slope (release_peft loads a LoRA checkpoint of 2-4 MB:
# its fitted slope is noise, and the plan multiplies it by the base's size before the LoRA exists).
FLAT_BELOW_MB = 64


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares a, b of peak = a x size + b; flat (0, the largest peak) where the sizes
    span less than FLAT_BELOW_MB."""
    xs = [x for x, _ in points]
    if max(xs) - min(xs) < FLAT_BELOW_MB:
        return 0.0, max(y for _, y in points)
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    a = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return a, my - a * mx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "job_memory.json")
    p.add_argument("--keep", action="store_true", help="keep the runs' folders")
    p.add_argument("--reuse", type=Path, help="a folder kept by --keep: read its runs again")
    p.add_argument("--only", nargs="+", choices=sorted(ONLY_TARGETS),
                   help="measure these rules alone; the output's other fits are kept")
    a = p.parse_args()
    if not rehearsal.LLAMA_TOKENIZER.is_file():
        sys.exit(f"error: {rehearsal.LLAMA_TOKENIZER}: the real LLaMA tokenizer is needed")
    root = a.reuse or Path(tempfile.mkdtemp(prefix="job_memory_"))
    runs: dict[int, dict] = {}
    try:
        for n in a.layers:
            start = time.monotonic()
            runs[n] = measure(n, root, a.only)
            print(f"{n} layers: {time.monotonic() - start:.0f} s", file=sys.stderr)
    finally:
        if not (a.keep or a.reuse):
            shutil.rmtree(root, ignore_errors=True)
    result = {"layers": a.layers, "rules": {}}
    if a.only:  # the other fits as they are, in their order
        result = json.loads(a.output.read_text())
    print("| rule | " + " | ".join(f"{n} layers: size / peak MB" for n in a.layers)
          + " | a | b MB |\n|---|" + "---|" * (len(a.layers) + 2))
    for rule in a.only or [*LOADS, "release_gguf"]:
        points = [runs[n][rule][:2] for n in a.layers]
        slope, intercept = fit(points)
        result["rules"][rule] = {"a": round(slope, 3), "b_mb": round(intercept),
                                 "points": [[round(x), round(y), round(runs[n][rule][2], 1)]
                                            for n, (x, y) in zip(a.layers, points, strict=True)]}
        cells = " | ".join(f"{x:,.0f} / {y:,.0f}" for x, y in points)
        print(f"| {rule} | {cells} | {slope:.2f} | {intercept:,.0f} |")
    a.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
