#!/usr/bin/env python
"""MMLU of the base and the finetuned model (vicuna.evaluation.mmlu): k-shot prompts in Hendrycks' layout,
scored by OpenNMT-py's method (`generate`: the greedy next token) and lm-eval's (`loglik`: the most
likely letter). Writes the accuracies (JSON: per model, per method, ACC-all and per subject) and
one row per question (TSV: subject, index, gold letter, each model's choice per method)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vicuna.evaluation import mmlu
from vicuna.files import write_json, write_text
from vicuna.serve import engines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True,
                   help="a directory with dev/ and test/ (or data/dev, data/test), or a .tar/.tar.gz")
    p.add_argument("--base", type=Path, required=True, help="the converted base checkpoint")
    p.add_argument("--finetuned", type=Path, required=True, help="the merged finetuned checkpoint")
    p.add_argument("--tokenizer_model", type=Path, required=True)
    p.add_argument("--shots", type=int, default=5, help="dev rows before each question")
    p.add_argument("--subjects", nargs="*",
                   help="default: every subject found, each of which must have its dev and test "
                        "file and a question (else an error names the file)")
    p.add_argument("--methods", nargs="+", choices=mmlu.METHODS, default=list(mmlu.METHODS))
    p.add_argument("--mode", choices=sorted(engines.REGISTRY), default="py")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--batch_size", type=int, default=16, help="questions per engine call")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--tsv", type=Path, required=True)
    a = p.parse_args(argv)
    if a.shots < 0 or a.batch_size < 1:
        p.error("--shots must be 0 or more, --batch_size 1 or more")

    def load_engine(model: Path) -> engines.Engine:
        opts = engines.scoring_options(a.mode, model, a.tokenizer_model, a.device, a.precision,
                                       a.batch_size)
        return engines.load(a.mode, opts, source=str(model))

    start = time.perf_counter()
    try:
        data = mmlu.load(a.data, a.subjects)
        result, rows = mmlu.evaluate({"base": a.base, "finetuned": a.finetuned}, data, a.shots,
                                     load_engine, a.methods, a.batch_size)
        result["seconds"] = round(time.perf_counter() - start, 1)
        write_json(a.json, result)
        write_text(a.tsv, "\n".join(rows) + "\n")
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    for name in ("base", "finetuned"):
        print(name, json.dumps({m: result[name][m]["acc_all"] for m in a.methods}),
              f"prompts cut to the context: {result[name]['prompts_cut']}")


if __name__ == "__main__":
    main()
