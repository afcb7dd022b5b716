"""What the finetuning did, measured: held-out loss of an OpenNMT-py model, counted as
OpenNMT-py's validation does (the model reads <s> + tokens and predicts tokens + </s>; the loss
is averaged over tokens), exact match of answers, and the agreement of the inference modes.

Two jobs use it: `heldout_loss` (the losses, which depend on the checkpoints and corpora only)
and `evaluate` (answers and agreement, which depend on the decoding options, and the table)."""

from __future__ import annotations

import gc
import json
import math
import tempfile
from pathlib import Path

import yaml

from vicuna import loss_mask, prompt
from vicuna.files import iter_lines, require_file
from vicuna.serve import engines, inference

PRECISIONS = ("fp32", "fp16")
MODELS = ("base", "finetuned")


def read_lines(path: str | Path, what: str) -> list[str]:
    """A file's lines; a named error for a missing or empty one (nothing to score)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    lines = list(iter_lines(path))
    if not lines:
        raise ValueError(f"{path}: empty {what} file, nothing to score")
    return lines


def load_scorer(path: str | Path, tokenizer_model: str, device: str = "cpu",
                precision: str = "fp32", mode: str = "py") -> engines.Engine:
    """The engine of a model, for its log-likelihoods: py's on a checkpoint (its model filled
    from the checkpoint tensor by tensor as the checkpoint lets them go: one copy of one
    model), or another mode's on its release (gguf: a GGUF file)."""
    opts = engines.scoring_options(mode, path, tokenizer_model, device, precision)
    return engines.load(mode, opts, source=str(path))


def _sequences(engine: engines.Engine, lines: list[str]) -> list[list[int]]:
    if not lines:
        raise ValueError("no example to score")
    sp = engine.sp
    return [[sp.bos_id(), *sp.encode(prompt.from_line(line)), sp.eos_id()] for line in lines]


def heldout_loss(engine: engines.Engine, lines: list[str]) -> float:
    """The mean loss per token of the lines, as OpenNMT-py's validation counts it."""
    return heldout_scores(engine, lines, answers_only=False)[0]


def heldout_scores(engine: engines.Engine, lines: list[str],
                   answers_only: bool) -> tuple[float, float | None]:
    """The mean loss per token of the lines, and (with `answers_only`) the mean loss per token
    on what carries the loss with train.answer_loss_only, as the training's validation counts
    it (vicuna.loss_mask); None for a corpus with no answer. A conversation is scored once for
    both. A single-round example is scored for its answer as OpenNMT-py's placeholder
    transform gives it to the training: the prompt, the pad token, then the answer tokenized
    on its own (what it reads at inference, without the pad, scores worse: see the README)."""
    sequences = _sequences(engine, lines)
    every = engine.logprobs(sequences)
    total, count = 0.0, 0
    for logprobs in every:  # summed as before answers_only: the same figure to the last bit
        total -= math.fsum(logprobs)
        count += len(logprobs)
    loss = total / count
    if not answers_only:
        return loss, None
    sp = engine.sp
    eos, pad = sp.eos_id(), engine.pad_id()
    specials = [sp.id_to_piece(i) for i in (sp.bos_id(), eos, sp.unk_id())]
    surfaces = loss_mask.vocab_bytes([sp.id_to_piece(i) for i in range(sp.get_piece_size())],
                                     specials)
    marked: dict[int, list[int]] = {}  # the single-round examples, as the training reads them
    for i, line in enumerate(lines):
        text = prompt.from_line(line)
        if text.count(loss_mask.ANSWER_START) == 1:
            head, answer = text.split(loss_mask.ANSWER_START)
            marked[i] = [sp.bos_id(), *sp.encode(head + loss_mask.ANSWER_START), pad,
                         *sp.encode(answer), eos]
    scored = dict(enumerate(every))
    scored.update(zip(marked, engine.logprobs(list(marked.values())) if marked else [],
                      strict=True))
    answer_total, answer_count = 0.0, 0
    for i, seq in enumerate(sequences):
        if i in marked:
            mask = loss_mask.after_placeholder(marked[i][1:], pad)
        else:  # the sp model has no pad: the layout's mask
            mask = loss_mask.answer_mask(seq[1:], surfaces, pad=-1, eos=eos)
        answer_total -= math.fsum(lp for lp, on in zip(scored[i], mask, strict=True) if on)
        answer_count += sum(mask)
    return loss, (answer_total / answer_count if answer_count else None)


def perplexity(loss: float) -> float:
    return math.exp(loss)


def heldout_losses(models: dict[str, Path], heldout: dict[str, list[str]], tokenizer_model: str,
                   device: str, precision: str, load=load_scorer,
                   answers_only: bool = False, mode: str = "py") -> dict[str, dict[str, float]]:
    """Loss and perplexity of each model on each held-out corpus: {model: {<corpus>_loss,
    <corpus>_perplexity}}, with `answers_only` also <corpus>_answer_loss and
    <corpus>_answer_perplexity (heldout_scores); one model in memory at a time (`load` is the
    loader, for tests)."""
    result: dict[str, dict[str, float]] = {}
    for name, path in models.items():
        engine = load(path, tokenizer_model, device, precision, mode)
        result[name] = {}
        for corpus, lines in heldout.items():
            loss, answer_loss = heldout_scores(engine, lines, answers_only)
            result[name][f"{corpus}_loss"] = round(loss, 4)
            result[name][f"{corpus}_perplexity"] = round(perplexity(loss), 3)
            if answer_loss is not None:
                result[name][f"{corpus}_answer_loss"] = round(answer_loss, 4)
                result[name][f"{corpus}_answer_perplexity"] = round(perplexity(answer_loss), 3)
        engine.close()
        del engine
        gc.collect()
    return result


def greedy_answers(model: Path, options_file: Path, prompts: list[str], run=inference.run) -> list[str]:
    """The py engine's answers of another checkpoint, with the options file's decoding (`run`
    is the batch inference, for tests)."""
    opts = yaml.safe_load(Path(options_file).read_text(encoding="utf-8"))
    opts["model"] = str(model)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(opts, f)
    try:
        answers, _ = run("py", f.name, prompts)
    finally:
        Path(f.name).unlink()
    return [a.text for a in answers]


def exact_match(predictions: list[str], references: list[str], *, until_stop: bool) -> float:
    """The share of predictions (corpus lines) equal to their reference, blanks at the ends aside.

    With `until_stop`, a prediction is read as the chatbot shows it: up to where the model opens
    a next "### Instruction:" round by itself. Without, the model must also stop there (</s>).
    """
    def answer(line: str) -> str:
        text = prompt.from_line(line)
        return (prompt.until_stop(text)[0] if until_stop else text).strip()

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    hits = sum(answer(p) == answer(r) for p, r in zip(predictions, references, strict=True))
    return hits / len(references)


def answer_scores(answers: list[str], references: list[str]) -> dict[str, float]:
    """exact_match (as the chatbot shows answers) and exact_match_eos (stopped by </s>)."""
    return {"exact_match": round(exact_match(answers, references, until_stop=True), 4),
            "exact_match_eos": round(exact_match(answers, references, until_stop=False), 4)}


def agreement(first: list[str], second: list[str], names: tuple[str, str] = ("py", "ct2")
              ) -> float:
    """The share of prompts whose predictions in two modes (`names`) are the same line."""
    if len(first) != len(second) or not first:
        raise ValueError(f"{len(first)} {names[0]} predictions but {len(second)} {names[1]} "
                         f"predictions")
    return round(sum(x == y for x, y in zip(first, second, strict=True)) / len(first), 4)


def agreements(predictions: dict[str, list[str]]) -> dict[str, float]:
    """<a>_<b>_agreement for each pair of modes, in the order given (py first: py_ct2,
    py_gguf, ct2_gguf)."""
    modes = list(predictions)
    return {f"{a}_{b}_agreement": agreement(predictions[a], predictions[b], (a, b))
            for i, a in enumerate(modes) for b in modes[i + 1:]}


def read_heldout(path: Path) -> dict:
    """heldout_loss.py's JSON: {"base": {...}, "finetuned": {...}}; a named error otherwise."""
    try:
        result = json.loads(require_file(path, "held-out losses").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e}); run heldout_loss.py again") from None
    if not (isinstance(result, dict) and all(isinstance(result.get(k), dict) for k in MODELS)):
        raise ValueError(f"{path}: expected {{'base': {{...}}, 'finetuned': {{...}}}} "
                         f"(heldout_loss.py's output); run heldout_loss.py again")
    return result


def evaluation(predictions: dict[str, Path], *, base: Path, options_py: Path,
               prompts: Path, references: Path | None = None,
               heldout: Path | None = None, mmlu: Path | None = None) -> dict:
    """eval.json: the held-out losses and MMLU scores (when given), the agreement of each pair
    of modes' predictions ({mode: file}, py's among them: the finetuned model's answers), and,
    where there are references, both models' answer scores (the base's answers generated with
    the py options; without references no model is loaded)."""
    if "py" not in predictions:
        raise ValueError("the py predictions are needed: they are the finetuned model's answers")
    answers = {mode: read_lines(path, f"{mode} predictions") for mode, path in predictions.items()}
    py = answers["py"]
    for mode, lines in answers.items():
        if len(lines) != len(py):
            raise ValueError(f"{predictions['py']} has {len(py)} lines, {predictions[mode]} "
                             f"{len(lines)}")
    refs: list[str] = []
    if references:
        refs = read_lines(references, "references")
        questions = read_lines(prompts, "prompts")
        if len(refs) != len(questions) or len(refs) != len(py):
            raise ValueError(f"{references} has {len(refs)} references for {len(questions)} "
                             f"prompts in {prompts} and {len(py)} predictions: one a line each")
    result: dict = read_heldout(heldout) if heldout else {name: {} for name in MODELS}
    if mmlu:
        join_mmlu(result, json.loads(require_file(mmlu, "MMLU scores").read_text()))
    result.update(agreements(answers))
    if refs:
        by_model = {"base": greedy_answers(base, options_py, questions), "finetuned": py}
        for name, model_answers in by_model.items():
            result[name].update(answer_scores(model_answers, refs))
    else:
        print("no references: no model loaded, no answer scored")
    return result


def join_mmlu(result: dict, mmlu: dict) -> None:
    """mmlu.py's ACC-all of each method into each model's metrics (mmlu_<method>_acc)."""
    for name in MODELS:
        scores = mmlu.get(name)
        if not isinstance(scores, dict):
            raise ValueError(f"MMLU scores without {name!r}: run mmlu.py again")
        for method, score in scores.items():
            if isinstance(score, dict) and "acc_all" in score:
                result[name][f"mmlu_{method}_acc"] = score["acc_all"]


def table_rows(result: dict) -> list[str]:
    """eval.tsv's rows: each metric for base and finetuned, then each pair of modes'
    agreement."""
    metrics = sorted({k for name in MODELS for k in result[name]})
    return ["metric\tbase\tfinetuned"] + [
        f"{m}\t{result['base'].get(m, '')}\t{result['finetuned'].get(m, '')}" for m in metrics
    ] + [f"{key}\t\t{value}" for key, value in result.items() if key.endswith("_agreement")]


def html_table(rows: list[str]) -> str:
    """The table's rows as HTML, for the Snakemake report."""
    cells = ["".join(f"<{tag}>{c}</{tag}>" for c in row.split("\t"))
             for tag, row in zip(["th"] + ["td"] * (len(rows) - 1), rows, strict=True)]
    return "<table id='eval'>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>\n"
