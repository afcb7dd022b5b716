"""The workflow's `all` on the tiny default, run once (the `tiny_run` fixture): every artifact,
the checks of the backbone issue, and the traps that only show in a trained model."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import yaml
from helpers import REPO, run_script, snakemake

from vicuna import prompt
from vicuna.evaluation import evaluate
from vicuna.serve import inference
from vicuna.weights import checkpoint

TINY = "runs/llama-tiny"  # the tiny default's run folder
STEP = f"{TINY}/finetuned_llama-tiny/llama-tiny-vicuna-onmt_step_800"


def lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def planned_files(workdir, *args: str) -> dict[str, list[str]]:
    """What every job of a dry run writes, by kind (output, log, benchmark), from the workflow
    itself: the list of artifacts is the graph's, not kept by hand."""
    out = snakemake(workdir, "-n", *args).stdout
    return {kind: [p for line in re.findall(rf"^    {kind}: (.*)$", out, re.M)
                   for p in line.split(", ")] for kind in ("output", "log", "benchmark")}


def test_all_leaves_every_artifact_and_one_prediction_per_example(tiny_run):
    planned = planned_files(tiny_run, "--forceall", "all")
    assert len(planned["output"]) >= 40 and len(planned["log"]) >= 20  # the whole graph
    for kind, paths in planned.items():
        missing = [p for p in paths if not (tiny_run / p).exists()]
        assert not missing, (kind, missing)
    # and what lies beside them: the LoRA checkpoint of an earlier step, the curves' events
    assert (tiny_run / f"{TINY}/finetuned_llama-tiny/llama-tiny-vicuna-onmt_step_200.pt").is_file()
    assert list((tiny_run / "runs/llama-tiny/finetuned_llama-tiny/logs").rglob("events.out.tfevents.*"))
    assert list((tiny_run / "runs/llama-tiny/finetuned_llama-tiny/samples").rglob("*.src"))
    n = len(lines(tiny_run / "synthetic/input_examples.txt"))
    for mode in ["py", "ct2", "gguf"]:
        assert len(lines(tiny_run / f"runs/llama-tiny/outputs/predictions_{mode}.txt")) == n
        # as shown: the same answers, none past a round the model opened by itself
        shown = lines(tiny_run / f"{TINY}/outputs/answers_{mode}.txt")
        assert len(shown) == n and not [a for a in shown if prompt.to_line(prompt.STOP) in a]


def test_all_scores_mmlu_for_both_models_and_both_methods(tiny_run):
    """runs/llama-tiny/outputs/mmlu.json and mmlu.tsv from the synthetic subjects, joined into eval.tsv; the
    tiny default's figures (README) mean something: chance is 25%, one model reaches 50%."""
    result = json.loads((tiny_run / "runs/llama-tiny/outputs/mmlu.json").read_text())
    rows = lines(tiny_run / "runs/llama-tiny/outputs/mmlu.tsv")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    n = 3 * config["synthetic"]["mmlu"]["n_test"]  # three subjects
    assert result["n"] == n and len(rows) == 1 + n
    assert result["shots"] == config["benchmarks"]["mmlu"]["shots"]
    assert rows[0].split("\t") == ["subject", "index", "gold", "shots", "base_generate",
                                   "base_loglik", "finetuned_generate", "finetuned_loglik"]
    figures = {(name, m): result[name][m]["acc_all"] for name in ("base", "finetuned")
               for m in ("generate", "loglik")}
    print("MMLU (synthetic subjects):", figures)
    assert max(figures.values()) >= 0.5
    table = (tiny_run / "runs/llama-tiny/outputs/eval.tsv").read_text()
    for m in ("generate", "loglik"):
        assert f"mmlu_{m}_acc\t{result['base'][m]['acc_all']}\t{result['finetuned'][m]['acc_all']}" \
            in table


def card_table(card: str, heading: str) -> list[list[str]]:
    """The rows of the first table under a card's `## heading`, as cells."""
    section = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")][2:]


@pytest.mark.parametrize("hub, release", [("HF", ".concat_HF"), ("PEFT", "_PEFT"), ("GGUF", None)])
def test_every_release_has_a_hub_folder_with_the_runs_card(tiny_run, hub, release):
    """`all` writes each release's Hub folder: README.md, whose figures are this run's (eval.tsv's
    cells as written, mmlu.json's questions, stats.tsv's counts), beside the release's files."""
    folder = tiny_run / f"{STEP}.hub_{hub}"
    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(re.match(r"---\n(.*?\n)---\n", card, re.S).group(1))
    assert meta["license"] == "FILL-IN-release.license" and meta["pipeline_tag"] == "text-generation"
    rows = {row[0].strip("`"): row[1:3] for row in card_table(card, "Evaluation")}
    table = [line.split("\t") for line in lines(tiny_run / f"{TINY}/outputs/eval.tsv")[1:]]
    assert rows == {metric: [base, finetuned] for metric, base, finetuned in table if base}
    agreement = next(row for row in table if row[0] == "py_ct2_agreement")
    assert f"- `py_ct2_agreement`: {agreement[2]} " in card
    mmlu = json.loads((tiny_run / f"{TINY}/outputs/mmlu.json").read_text())
    assert f"{mmlu['shots']}-shot, {mmlu['n']} questions" in card
    stats = [line.split("\t") for line in lines(tiny_run / f"{TINY}/dataAI/stats.tsv")]
    examples = {row[0]: row[stats[0].index("examples")] for row in stats[1:]}
    data = {row[0].strip("`"): row[4].replace(",", "") for row in card_table(card, "Data")}
    assert data == examples
    recipe = dict(row[:2] for row in card_table(card, "Recipe"))
    assert recipe["steps"] == "800" and recipe["LoRA"].startswith("rank 8, alpha 16")
    if release:  # a directory: its files (not Snakemake's .snakemake_timestamp)
        root = tiny_run / f"{STEP}{release}"
        files = {p.relative_to(root).as_posix(): p for p in root.rglob("*")
                 if p.is_file() and not p.name.startswith(".")}
    else:  # the GGUF files and the Modelfile
        paths = [*tiny_run.glob(f"{STEP}.concat-*.gguf"), tiny_run / f"{STEP}.concat.Modelfile"]
        files = {p.name: p for p in paths}
        assert len(files) == 4
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "README.md"])
    assert all((folder / name).samefile(path) for name, path in files.items())


def test_nothing_to_do_after_all(tiny_run):
    result = snakemake(tiny_run, "-n", "--", "all")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_feed_forward_layers_were_trained_in_8_bit(tiny_run):
    log = (tiny_run / "runs/llama-tiny/logs/finetune.log").read_text()
    int8 = re.search(r"Non trainable parameters = \{.*'torch\.int8': (\d+)", log)
    assert int8 and int(int8.group(1)) > 0  # an empty quant_type would leave 0


@pytest.fixture(scope="module")
def models(tiny_run):
    base = checkpoint.load(tiny_run / "runs/llama-tiny/llama-tiny-vicuna-onmt.pt")
    lora = checkpoint.load(tiny_run / f"{STEP}.pt")
    return {
        "base": checkpoint.build_model(base),
        "unmerged": checkpoint.build_model(base, lora=lora),
        "merged": checkpoint.build_model(checkpoint.load(tiny_run / f"{STEP}.concat.pt")),
    }


def test_merged_checkpoint_equals_base_plus_lora(models):
    torch.manual_seed(0)
    tokens = torch.randint(4, 700, (4, 60))  # from 4: id 3 is OpenNMT-py's pad
    merged = checkpoint.logits(models["merged"], tokens)
    unmerged = checkpoint.logits(models["unmerged"], tokens)
    assert (merged - unmerged).abs().max().item() <= 1e-4


@pytest.fixture(scope="module")
def heldout(tiny_run):
    tokenizer = tiny_run / "synthetic/llama/tokenizer.model"
    valid = lines(tiny_run / "runs/llama-tiny/dataAI/valid.txt")
    checkpoints = {"base": "runs/llama-tiny/llama-tiny-vicuna-onmt.pt", "merged": f"{STEP}.concat.pt"}
    return {name: evaluate.heldout_loss(evaluate.load_scorer(tiny_run / path, tokenizer), valid)
            for name, path in checkpoints.items()}


def test_heldout_loss_of_merged_model_matches_training_validation(tiny_run, heldout):
    log = (tiny_run / "runs/llama-tiny/logs/finetune.log").read_text()
    trained_ppl = float(re.findall(r"Validation perplexity: ([\d.]+)", log)[-1])
    print(f"held-out loss: training {math.log(trained_ppl):.4f}, merged {heldout['merged']:.4f}")
    assert heldout["merged"] == pytest.approx(math.log(trained_ppl), rel=0.05)


def test_finetuning_lowers_the_heldout_loss(heldout):
    print(f"held-out loss: base {heldout['base']:.3f}, finetuned {heldout['merged']:.3f}")
    assert heldout["merged"] < heldout["base"]


def test_evaluation_scores_each_heldout_corpus(tiny_run):
    """The alpaca validation set and the held-out ShareGPT conversations, each for both models;
    finetuning on both kinds of data lowers both losses."""
    result = json.loads((tiny_run / "runs/llama-tiny/outputs/eval.json").read_text())
    for corpus in ("valid", "sharegpt"):
        base, tuned = result["base"][f"{corpus}_loss"], result["finetuned"][f"{corpus}_loss"]
        print(f"{corpus} held-out loss: base {base}, finetuned {tuned}")
        assert tuned < base
        assert result["finetuned"][f"{corpus}_perplexity"] == pytest.approx(math.exp(tuned), rel=1e-3)


def test_finetuning_teaches_the_tasks(tiny_run):
    """Issue #7's bar on the tiny default: the base, which answers in its own layouts and then
    goes on writing exercises, gets next to nothing right; the finetuned model most."""
    result = json.loads((tiny_run / "runs/llama-tiny/outputs/eval.json").read_text())
    base, tuned = result["base"]["exact_match"], result["finetuned"]["exact_match"]
    print(f"exact match: base {base:.1%}, finetuned {tuned:.1%}")
    assert tuned >= 0.5
    assert tuned - base >= 0.4


@pytest.fixture(scope="module")
def ct2_float32(tiny_run, tmp_path_factory):
    """A float32 release of the merged checkpoint with the workflow's decoding options."""
    tmp = tmp_path_factory.mktemp("ct2_float32")
    run_script("release_model.py", "--model", str(tiny_run / f"{STEP}.concat.pt"),
               "--output", str(tmp / "model"), "--quantization", "float32")
    opts = yaml.safe_load((tiny_run / "runs/llama-tiny/translate_opts_ct2.yaml").read_text())
    opts.update(model=str(tmp / "model"), src_subword_model=str(tiny_run / opts["src_subword_model"]))
    (tmp / "opts.yaml").write_text(yaml.safe_dump(opts))
    prompts = lines(tiny_run / "synthetic/input_examples.txt")
    answers, _ = inference.run("ct2", tmp / "opts.yaml", prompts)
    return [a.text for a in answers]


def test_greedy_py_predictions_equal_float32_ct2(tiny_run, ct2_float32):
    py = lines(tiny_run / "runs/llama-tiny/outputs/predictions_py.txt")
    int8 = lines(tiny_run / "runs/llama-tiny/outputs/predictions_ct2.txt")
    agree = sum(a == b for a, b in zip(py, int8, strict=True))
    print(f"int8_float16 release agrees with py on {agree}/{len(py)} greedy predictions")
    assert py == ct2_float32


def test_gguf_q8_0_agrees_with_py_at_least_as_often_as_ct2_int8(tiny_run):
    """The gguf mode's greedy answers (llama.cpp on the Q8_0 file, the default gguf_type) part
    from the float model's no more often than CTranslate2's int8 release does; the table says
    the same figures."""
    outputs = tiny_run / "runs/llama-tiny/outputs"
    py, ct2, gguf = (lines(outputs / f"predictions_{mode}.txt") for mode in ("py", "ct2", "gguf"))
    config = yaml.safe_load((tiny_run / "runs/llama-tiny/translate_opts_gguf.yaml").read_text())
    assert config["model"].endswith(".concat-q8_0.gguf")
    same_ct2 = sum(a == b for a, b in zip(py, ct2, strict=True))
    same_gguf = sum(a == b for a, b in zip(py, gguf, strict=True))
    print(f"of {len(py)} greedy answers, py = ct2 int8: {same_ct2}, py = gguf Q8_0: {same_gguf}")
    assert same_gguf >= same_ct2
    result = json.loads((outputs / "eval.json").read_text())
    assert result["py_gguf_agreement"] == round(same_gguf / len(py), 4)
    assert result["py_ct2_agreement"] == round(same_ct2 / len(py), 4)


def test_gguf_min_length_holds_the_end_token_back(tiny_run, monkeypatch):
    """The finetuned model ends its short answers with </s>; min_length (the benchmarks' forced
    lengths) keeps it from ending earlier, as in py and ct2."""
    from vicuna.serve import engines

    monkeypatch.chdir(tiny_run)
    engine = engines.load("gguf", "runs/llama-tiny/translate_opts_gguf.yaml")
    prompts = [prompt.from_line(p) for p in lines(tiny_run / "synthetic/input_examples.txt")[:8]]
    free = engine.generate(prompts)
    assert min(a.tokens for a in free) < 12  # some end by themselves
    forced = engine.generate(prompts, {"max_length": 12, "min_length": 12})
    assert [a.tokens for a in forced] == [12] * len(prompts)
    for a, f in zip(free, forced, strict=True):  # the same answer until one of them ends
        assert f.text.startswith(a.text) if a.tokens < 12 else a.text.startswith(f.text)
    engine.close()


def test_without_the_rotary_fix_py_would_disagree(tiny_run, ct2_float32, monkeypatch):
    """The check above has teeth: OpenNMT-py's own cached decoding is off by one position."""
    from onmt.translate.translator import GeneratorLM

    from vicuna import onmt_fixes

    onmt_fixes.apply()
    monkeypatch.chdir(tiny_run)
    monkeypatch.setattr(GeneratorLM, "_decode_and_generate",
                        GeneratorLM._decode_and_generate.__wrapped__)
    answers, _ = inference.run("py", "runs/llama-tiny/translate_opts_py.yaml",
                               lines(tiny_run / "synthetic/input_examples.txt"))
    same = sum(a.text == b for a, b in zip(answers, ct2_float32, strict=True))
    print(f"without the fix, py agrees with ct2 float32 on {same}/{len(answers)}")
    assert same < len(answers)


def test_synthetic_data_is_the_same_bytes_for_the_same_seed(tiny_run, tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())["synthetic"]
    args = [f"--{k}={config[k]}" for k in
            ("seed", "n_alpaca", "n_sharegpt", "n_heldout", "n_heldout_sharegpt", "n_pretrain",
             "n_examples", "n_pretrain_mmlu")]
    args += [f"--mmlu_dev={config['mmlu']['n_dev']}", f"--mmlu_test={config['mmlu']['n_test']}"]
    run_script("make_synthetic_data.py", *args, "--out_dir", str(tmp_path))
    for name in ["alpaca.json", "sharegpt.json", "heldout.json", "heldout_sharegpt.json",
                 "pretrain.txt", "mmlu/dev/first_word_dev.csv", "mmlu/test/word_counting_test.csv"]:
        assert (tmp_path / name).read_bytes() == (tiny_run / "synthetic" / name).read_bytes()
