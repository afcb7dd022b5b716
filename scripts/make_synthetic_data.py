#!/usr/bin/env python
"""Write the tiny default's synthetic instruction data: raw alpaca and ShareGPT JSON, held-out
alpaca records and ShareGPT conversations, the base model's pretraining text and the
inference inputs."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from vicuna import prompt
from vicuna.files import write_json, write_lines, write_text
from vicuna.tiny import synthetic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--n_alpaca", type=int, required=True)
    p.add_argument("--n_sharegpt", type=int, required=True)
    p.add_argument("--n_heldout", type=int, required=True)
    p.add_argument("--n_heldout_sharegpt", type=int, default=0, help="held-out conversations")
    p.add_argument("--n_pretrain", type=int, required=True)
    p.add_argument("--n_examples", type=int, required=True, help="held-out prompts to infer")
    p.add_argument("--n_pretrain_mmlu", type=int, default=0,
                   help="pretraining exams in Hendrycks' MMLU layout")
    p.add_argument("--mmlu_dev", type=int, default=5, help="dev rows per synthetic MMLU subject")
    p.add_argument("--mmlu_test", type=int, default=0,
                   help="test questions per synthetic MMLU subject (0: no MMLU files)")
    p.add_argument("--out_dir", type=Path, required=True)
    a = p.parse_args()
    if a.n_examples > a.n_heldout:
        p.error(f"--n_examples ({a.n_examples}) cannot exceed --n_heldout ({a.n_heldout})")

    sets = synthetic.generate(a.seed, a.n_alpaca, a.n_sharegpt, a.n_heldout, a.n_pretrain,
                              a.n_heldout_sharegpt, a.n_pretrain_mmlu)
    write_json(a.out_dir / "alpaca.json", sets["alpaca"])
    write_json(a.out_dir / "sharegpt.json", sets["sharegpt"])
    write_json(a.out_dir / "heldout.json", sets["heldout"])
    write_json(a.out_dir / "heldout_sharegpt.json", sets["heldout_sharegpt"])
    write_lines(a.out_dir / "pretrain.txt", [prompt.to_line(t) for t in sets["pretrain"]])
    # Inference inputs: held-out prompts up to "### Response:\n"; their answers for evaluation.
    examples = sets["heldout"][: a.n_examples]
    prompts = [prompt.to_line(prompt.alpaca(r["instruction"], r["input"], "")) for r in examples]
    write_lines(a.out_dir / "input_examples.txt", prompts)
    write_lines(a.out_dir / "references.txt", [prompt.to_line(r["output"]) for r in examples])
    if a.mmlu_test:  # MMLU's CSV layout: mmlu/dev/<subject>_dev.csv, mmlu/test/<subject>_test.csv
        mmlu_sets = synthetic.mmlu_sets(a.seed, a.mmlu_dev, a.mmlu_test, set(sets["exam_questions"]))
        for subject, splits in mmlu_sets.items():
            for split, rows in zip(("dev", "test"), splits, strict=True):
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\n").writerows(rows)
                write_text(a.out_dir / "mmlu" / split / f"{subject}_{split}.csv", buffer.getvalue())
    print(f"wrote {a.out_dir}: {len(sets['alpaca'])} alpaca, {len(sets['sharegpt'])} sharegpt, "
          f"{len(sets['heldout'])} + {len(sets['heldout_sharegpt'])} held-out, "
          f"{len(examples)} inference inputs")


if __name__ == "__main__":
    main()
