#!/usr/bin/env python
"""What each job of the 7B run asks SLURM for, printed as the table docs/slurm.md holds: the
README's 7B command planned (`snakemake -n`) in a scratch clone on placeholder bases of the
real size (Meta's params.json and sparse consolidated.NN.pth files: 7B in one shard, 13B in
two, through an override file as a user with that model writes it). Nothing is trained or
loaded; a run takes about 10 s.

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
from pathlib import Path

from vicuna.testing import random_base, rehearsal

SEVEN_B = "snakemake all --profile profiles/slurm --configfile configs/llama7b-vicuna.yaml"
MODELS = {"7B": None, "13B": "model_name: llama13B\nbase: {model_dir: llama/13B}\n"}
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


def plan(model: str, work: Path, snakemake: str) -> tuple[float, list[dict]]:
    """The 7B command's dry run on a placeholder `model` in the clone `work`: GiB of weights,
    the planned jobs."""
    shards = random_base.write_placeholder(work / "llama" / model, model)
    (work / "llama" / "tokenizer.model").write_bytes(b"")  # read by no job of a dry run
    args = shlex.split(SEVEN_B)[1:]
    if MODELS[model]:
        (work / f"{model}.yaml").write_text(MODELS[model])
        at = args.index("configs/llama7b-vicuna.yaml") + 1
        args[at:at] = [f"{model}.yaml"]
    result = subprocess.run([snakemake, *args, "--dry-run"], cwd=work, capture_output=True,
                            text=True)
    if result.returncode:
        sys.exit(f"error: the {model} plan failed:\n{result.stderr[-3000:]}")
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
    for model in MODELS:
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
