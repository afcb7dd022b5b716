#!/usr/bin/env python
"""Evaluate the base and the finetuned model: exact match of greedy answers against references
(where the inputs have them) and the agreement of each pair of modes' predictions
(--predictions_<mode>: py, ct2, gguf), joined with the held-out losses (heldout_loss.py's JSON,
where there are held-out corpora). Writes outputs/eval.json and a table (outputs/eval.tsv).

An answer is read as the chatbot shows it: the generated text up to </s>, or up to where the
model opens a next "### Instruction:" round by itself (`exact_match`). `exact_match_eos` also
asks that the model stop there by itself, with </s>.

The finetuned model's answers are the py predictions; only the base's are generated here, with
the py options (device, precision, decoding), and only when there are references: without
them, no model is loaded at all (a 7B run without references reports the modes' agreement)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.evaluation import evaluate
from vicuna.files import write_json, write_text
from vicuna.serve import engines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base", type=Path, required=True, help="the converted base checkpoint")
    p.add_argument("--heldout_loss", type=Path, help="heldout_loss.py's JSON, to join")
    p.add_argument("--mmlu", type=Path, help="mmlu.py's JSON, to join (ACC-all per method)")
    p.add_argument("--prompts", type=Path, required=True)
    p.add_argument("--references", type=Path, help="expected answers, one a line")
    for mode in engines.REGISTRY:  # py's are required: the finetuned model's answers
        p.add_argument(f"--predictions_{mode}", type=Path, required=mode == "py",
                       help=f"simple_inference.py's predictions_{mode}.txt")
    p.add_argument("--translate_opts_py", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--html", type=Path, help="the table as HTML, for the Snakemake report")
    a = p.parse_args()

    try:
        predictions = {mode: getattr(a, f"predictions_{mode}") for mode in engines.REGISTRY}
        result = evaluate.evaluation(
            {mode: path for mode, path in predictions.items() if path},
            base=a.base, options_py=a.translate_opts_py,
            prompts=a.prompts, references=a.references, heldout=a.heldout_loss,
            mmlu=a.mmlu)
        rows = evaluate.table_rows(result)
        write_json(a.json, result)
        write_text(a.table, "\n".join(rows) + "\n")
        if a.html:
            write_text(a.html, evaluate.html_table(rows))
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
