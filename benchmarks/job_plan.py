#!/usr/bin/env python
"""What each job asks SLURM for, printed as the table docs/slurm.md holds: the README's 7B command
planned (`snakemake -n`) in a scratch clone on placeholder bases of the real size (Meta's
params.json and sparse consolidated.NN.pth files, or Hugging Face's config.json and a sparse
model.safetensors), one column per base: LLaMA 7B and 13B (an override file, as a user with
that model writes it), and each base's config of configs/ layered on the 7B run (Llama 2 7B,
TinyLlama 1.1B, Mistral 7B), and Llama 2 70B (configs/llama2-7b.yaml plus an override).
Nothing is trained or loaded; a run takes about 30 s.

    .venv/bin/python benchmarks/job_plan.py            # the markdown table, to stdout
    .venv/bin/python benchmarks/job_plan.py --check docs/slurm.md   # exit 1 if the page differs
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vicuna.testing import random_base, rehearsal

SEVEN_B = "snakemake all --profile profiles/slurm --configfile configs/llama7b-vicuna.yaml"


@dataclass
class Base:
    placeholder: str  # random_base's name of its shape
    model_dir: str  # where its config puts it
    configs: tuple[str, ...] = ()  # layered on the 7B config
    override: str | None = None  # a user's override file, last
    hf: bool = False  # Hugging Face's layout (else Meta's)


BASES = {
    "7B": Base("7B", "llama/7B"),
    "13B": Base("13B", "llama/13B", override="model_name: llama13B\nbase: {model_dir: llama/13B}\n"),
    "Llama-2-7B": Base("llama2-7B", "llama-2/llama-2-7b", ("configs/llama2-7b.yaml",)),
    "TinyLlama-1.1B": Base("tinyllama-1.1B", "models/TinyLlama-1.1B",
                           ("configs/tinyllama-1.1b.yaml",), hf=True),
    "Mistral-7B": Base("mistral-7B", "models/Mistral-7B-v0.1", ("configs/mistral-7b.yaml",),
                       hf=True),
    "Llama-2-70B": Base("llama2-70B", "llama-2/llama-2-70b", ("configs/llama2-7b.yaml",),
                        override="model_name: llama2-70B\nbase: {model_dir: llama-2/llama-2-70b}\n"),
}
BEGIN, END = "<!-- job_plan.py: begin -->", "<!-- job_plan.py: end -->"


def planned_jobs(output: str) -> list[dict]:
    """Each planned job of a dry run: rule, wildcards and resources."""
    jobs = []
    for block in re.split(r"\n\s*\n", output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and resources:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            jobs.append({
                "rule": rule.group(1),
                "wildcards": dict(w.split("=") for w in wildcards.group(1).split(", "))
                if wildcards else {},
                "resources": dict(r.split("=", 1) for r in resources.group(1).split(", ")),
            })
    return jobs


def plan(name: str, work: Path, snakemake: str) -> tuple[float, list[dict]]:
    """The 7B command's dry run with base `name`'s files in the clone `work`: GiB of weights,
    the planned jobs."""
    base = BASES[name]
    if base.hf:
        shards = random_base.write_placeholder_hf(work / base.model_dir, base.placeholder)
        tokenizers = [work / base.model_dir / "tokenizer.model"]
    else:
        shards = random_base.write_placeholder(work / base.model_dir, base.placeholder)
        tokenizers = [work / Path(base.model_dir).parent / "tokenizer.model"]
    for path in tokenizers:
        path.write_bytes(b"")  # read by no job of a dry run
    args = shlex.split(SEVEN_B)[1:]
    at = args.index("configs/llama7b-vicuna.yaml") + 1
    layered = list(base.configs)
    if base.override:
        (work / "override.yaml").write_text(base.override)
        layered.append("override.yaml")
    args[at:at] = layered
    result = subprocess.run([snakemake, *args, "--dry-run"], cwd=work, capture_output=True,
                            text=True)
    if result.returncode:
        sys.exit(f"error: the {name} plan failed:\n{result.stderr[-3000:]}")
    return sum(p.stat().st_size for p in shards) / 2**30, planned_jobs(result.stdout)


def job_name(job: dict) -> str:
    mode = job["wildcards"].get("mode")
    return f"`{job['rule']}`" + (f" {mode}" if mode else "")


def table(plans: dict[str, tuple[float, list[dict]]]) -> str:
    """Job -> host memory asked (GiB) and GPUs, one column per model, in the plan's order."""
    rows: dict[str, dict[str, str]] = {}
    gpus: dict[str, str] = {}
    for model, (_, jobs) in plans.items():
        for job in jobs:
            if job["rule"] == "all":
                continue
            name = job_name(job)
            rows.setdefault(name, {})[model] = f"{int(job['resources']['mem_mb']) / 1024:.1f} GiB"
            gpus[name] = job["resources"].get("gpu", "0")
    head = [f"{m} ({size:.1f} GiB of fp16 weights)" for m, (size, _) in plans.items()]
    lines = ["| job | GPUs | " + " | ".join(head) + " |",
             "|---|---|" + "---|" * len(plans)]
    for name in sorted(rows):
        lines.append(f"| {name} | {gpus[name]} | "
                     + " | ".join(rows[name].get(m, "") for m in plans) + " |")
    return "\n".join(lines)


def page_table(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"error: {page}: no {BEGIN} ... {END} block")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", type=Path, help="compare with the table in this page; exit 1 if it differs")
    a = p.parse_args()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    plans = {}
    for model in BASES:
        with tempfile.TemporaryDirectory() as scratch:
            work = rehearsal.clone(Path(scratch) / "repo")
            plans[model] = plan(model, work, snakemake)
    printed = table(plans)
    if a.check:
        if page_table(a.check) != printed:
            print(printed)
            sys.exit(f"error: {a.check}: the job plan differs from the one printed above")
        print(f"{a.check}: the job plan is as printed")
        return
    print(printed)


if __name__ == "__main__":
    main()
