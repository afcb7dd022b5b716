#!/usr/bin/env python
"""Evaluate the base and the finetuned model: held-out loss and perplexity, exact match of
greedy answers against references (where the inputs have them), and the agreement of the
`py` and `ct2` predictions. Writes outputs/eval.json and a table (outputs/eval.tsv).

An answer is read as the chatbot shows it: the generated text up to </s>, or up to where the
model opens a next "### Instruction:" round by itself (`exact_match`). `exact_match_eos` also
asks that the model stop there by itself, with </s>.

Models run on --device in --precision, one at a time, and only for what there is to report:
with no held-out corpus and no references, no model is loaded at all (a 7B run without
held-out data reports the py/ct2 agreement only)."""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

import yaml

from vicuna import evaluate, inference, tokenizer
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


def read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    lines = list(iter_lines(path))
    if not lines:
        raise ValueError(f"{path}: empty {what} file, nothing to score")
    return lines


def heldout_losses(models: dict[str, Path], heldout: dict[str, list[str]], tokenizer_model: str,
                   device: str, precision: str) -> dict[str, dict[str, float]]:
    """Loss and perplexity of each model on each held-out corpus; one model in memory at a time."""
    sp = tokenizer.load(tokenizer_model)
    result: dict[str, dict[str, float]] = {}
    for name, path in models.items():
        model = evaluate.load_model(path, device, precision)
        result[name] = {}
        for corpus, lines in heldout.items():
            loss = evaluate.heldout_loss(model, sp, lines)
            result[name][f"{corpus}_loss"] = round(loss, 4)
            result[name][f"{corpus}_perplexity"] = round(evaluate.perplexity(loss), 3)
        del model
        gc.collect()
    return result


def table_rows(result: dict) -> list[str]:
    metrics = sorted({k for name in ("base", "finetuned") for k in result[name]})
    return ["metric\tbase\tfinetuned"] + [
        f"{m}\t{result['base'].get(m, '')}\t{result['finetuned'].get(m, '')}" for m in metrics
    ] + [f"py_ct2_agreement\t\t{result['py_ct2_agreement']}"]


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
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=sorted(evaluate.DTYPES), default="fp32")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--html", type=Path, help="the table as HTML, for the Snakemake report")
    a = p.parse_args()

    try:
        heldout = {name: read_lines(Path(text), f"held-out {name}") for name, text in a.heldout}
        py = read_lines(a.predictions_py, "py predictions")
        ct2 = read_lines(a.predictions_ct2, "ct2 predictions")
        if len(py) != len(ct2):
            raise ValueError(f"{a.predictions_py} has {len(py)} lines, {a.predictions_ct2} {len(ct2)}")
        refs, prompts = [], []
        if a.references:
            refs, prompts = read_lines(a.references, "references"), read_lines(a.prompts, "prompts")
            if len(refs) != len(prompts) or len(refs) != len(py):
                raise ValueError(f"{a.references} has {len(refs)} references for {len(prompts)} "
                                 f"prompts in {a.prompts} and {len(py)} predictions: one a line each")
        models = {"base": a.base, "finetuned": a.finetuned}
        result: dict = {"base": {}, "finetuned": {}}
        if heldout:
            result = heldout_losses(models, heldout, a.tokenizer_model, a.device, a.precision)
        result["py_ct2_agreement"] = round(sum(x == y for x, y in zip(py, ct2, strict=True)) / len(py), 4)
        if refs:
            # the finetuned model's greedy answers are the py predictions already
            base_answers = greedy_answers(a.base, a.translate_opts_py, prompts)
            for name, answers in (("base", base_answers), ("finetuned", py)):
                result[name]["exact_match"] = round(evaluate.exact_match(answers, refs, until_stop=True), 4)
                result[name]["exact_match_eos"] = round(
                    evaluate.exact_match(answers, refs, until_stop=False), 4)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if not heldout and not refs:
        print("no held-out corpus and no references: no model loaded, py/ct2 agreement only")
    write_json(a.json, result)
    rows = table_rows(result)
    write_text(a.table, "\n".join(rows) + "\n")
    if a.html:
        cells = ["".join(f"<{tag}>{c}</{tag}>" for c in row.split("\t"))
                 for tag, row in zip(["th"] + ["td"] * (len(rows) - 1), rows, strict=True)]
        write_text(a.html, "<table id='eval'>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
