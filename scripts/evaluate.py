#!/usr/bin/env python
"""Evaluate the base and the finetuned model: held-out loss and perplexity, exact match of
greedy answers against references (where the inputs have them), and the agreement of the
`py` and `ct2` predictions. Writes outputs/eval.json and a table (outputs/eval.tsv).

An answer is read as the chatbot shows it: the generated text up to </s>, or up to where the
model opens a next "### Instruction:" round by itself (`exact_match`). `exact_match_eos` also
asks that the model stop there by itself, with </s>."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from vicuna import checkpoint, evaluate, inference, tokenizer
from vicuna.files import write_json, write_text
from vicuna.flatten import iter_lines


def greedy_answers(model: Path, options_file: Path, prompts: list[str]) -> list[str]:
    """The py engine's answers of another checkpoint, with the workflow's decoding options."""
    opts = yaml.safe_load(options_file.read_text())
    opts["model"] = str(model)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(opts, f)
    try:
        answers, _ = inference.run("py", f.name, prompts)
    finally:
        Path(f.name).unlink()
    return [a.text for a in answers]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base", type=Path, required=True, help="the converted base checkpoint")
    p.add_argument("--finetuned", type=Path, required=True, help="the merged checkpoint")
    p.add_argument("--tokenizer_model", required=True)
    p.add_argument("--heldout", nargs=2, action="append", default=[], metavar=("NAME", "TEXT"))
    p.add_argument("--prompts", type=Path, required=True)
    p.add_argument("--references", type=Path, help="expected answers, one a line")
    p.add_argument("--predictions_py", type=Path, required=True)
    p.add_argument("--predictions_ct2", type=Path, required=True)
    p.add_argument("--translate_opts_py", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--html", type=Path, help="the table as HTML, for the Snakemake report")
    a = p.parse_args()

    sp = tokenizer.load(a.tokenizer_model)
    models = {"base": a.base, "finetuned": a.finetuned}
    result: dict = {name: {} for name in models}
    for name, path in models.items():
        model = checkpoint.build_model(checkpoint.load(path))
        for corpus, text in a.heldout:
            loss = evaluate.heldout_loss(model, sp, list(iter_lines(Path(text))))
            result[name][f"{corpus}_loss"] = round(loss, 4)
            result[name][f"{corpus}_perplexity"] = round(evaluate.perplexity(loss), 3)
    py, ct2 = list(iter_lines(a.predictions_py)), list(iter_lines(a.predictions_ct2))
    result["py_ct2_agreement"] = round(sum(x == y for x, y in zip(py, ct2, strict=True)) / len(py), 4)
    if a.references:
        refs = list(iter_lines(a.references))
        prompts = list(iter_lines(a.prompts))
        base_answers = greedy_answers(a.base, a.translate_opts_py, prompts)
        for name, answers in (("base", base_answers), ("finetuned", py)):
            result[name]["exact_match"] = round(evaluate.exact_match(answers, refs, until_stop=True), 4)
            result[name]["exact_match_eos"] = round(evaluate.exact_match(answers, refs, until_stop=False), 4)
    write_json(a.json, result)
    metrics = sorted({k for name in models for k in result[name]})
    rows = ["metric\tbase\tfinetuned"] + [
        f"{m}\t{result['base'].get(m, '')}\t{result['finetuned'].get(m, '')}" for m in metrics
    ] + [f"py_ct2_agreement\t\t{result['py_ct2_agreement']}"]
    write_text(a.table, "\n".join(rows) + "\n")
    if a.html:
        cells = ["".join(f"<{tag}>{c}</{tag}>" for c in row.split("\t"))
                 for tag, row in zip(["th"] + ["td"] * (len(rows) - 1), rows, strict=True)]
        write_text(a.html, "<table id='eval'>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
