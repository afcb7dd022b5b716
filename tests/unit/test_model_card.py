"""scripts/model_card.py: each release's Hub folder, the release's files (hard links) and its
card, README.md, written from the run's files. The run's files here are small fixtures with
values no default has (rank 5, alpha 11, 321 steps, eval figures like 0.6172), so a value found
in the card can only have come from them; the releases are real (a random tiny LLaMA released
by release_model.py). The front matter is read by PyYAML and by huggingface_hub's own model card
parser; the prompt the card shows is checked against transformers' rendering of the folder's
chat template, and the card's code is run as written, on the folder."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import call_script, env, fails, listing, make_lora, run, run_script

from vicuna import prompt

HUB_DATASET = "someone/chat-corpus"
EVAL = {
    "base": {"valid_loss": 2.7182, "valid_perplexity": 15.155, "sharegpt_loss": 3.1416,
             "sharegpt_perplexity": 23.14, "exact_match": 0.0625, "exact_match_eos": 0.0,
             "mmlu_generate_acc": 0.3417, "mmlu_loglik_acc": 0.4083},
    "finetuned": {"valid_loss": 1.2345, "valid_perplexity": 3.437, "sharegpt_loss": 1.5,
                  "sharegpt_perplexity": 4.482, "exact_match": 0.6172, "exact_match_eos": 0.5938,
                  "mmlu_generate_acc": 0.5583, "mmlu_loglik_acc": 0.6917},
    "py_ct2_agreement": 0.9688,
}
STATS_COLUMNS = ["corpus", "use", "records", "skipped", "examples", "tokens", "training_examples",
                 "training_tokens"]
STATS = [["alpaca_clean", "train", "4321", "0", "4321", "212937", "4310", "210000"],
         ["sharegpt", "train", "987", "2", "985", "88864", "985", "88864"],
         ["valid", "scored whole", "201", "0", "201", "10734", "-", "-"],
         ["heldout_sharegpt", "scored whole", "53", "0", "53", "4566", "-", "-"]]


@pytest.fixture(scope="module")
def run_files(tmp_path_factory) -> dict[str, Path | list[Path]]:
    """A run's files, as the workflow writes them, with values of their own."""
    root = tmp_path_factory.mktemp("run")
    data = root / "dataAI"
    data.mkdir()
    finetune = {
        "data": {"alpaca_clean": {"path_src": "dataAI/alpaca_clean.txt", "weight": 7},
                 "sharegpt": {"path_src": "dataAI/sharegpt.txt", "weight": 3},
                 "valid": {"path_src": "dataAI/valid.txt"}},
        "train_steps": 321, "batch_type": "tokens", "batch_size": 777, "accum_count": [9],
        "src_seq_length": 613, "optim": "adam", "learning_rate": 0.00042, "warmup_steps": 17,
        "adam_beta2": 0.998, "model_dtype": "fp16", "lora_layers": ["linear_values", "linear_query"],
        "lora_rank": 5, "lora_alpha": 11, "lora_dropout": 0.05, "quant_layers": ["w_1", "w_3"],
        "quant_type": "bnb_8bit", "zero_out_prompt_loss": True,
    }
    files = {"finetune_config": root / "replicate_vicuna.yaml", "data_report": data / "stats.tsv",
             "evaluation": root / "eval.json", "mmlu": root / "mmlu.json"}
    files["finetune_config"].write_text("# Written by the workflow\n" + yaml.safe_dump(finetune))
    files["data_report"].write_text("".join("\t".join(row) + "\n" for row in [STATS_COLUMNS, *STATS]))
    provenance = []
    for name in ("alpaca_clean", "valid", "heldout_sharegpt"):
        provenance.append(data / f"{name}.flatten.json")
        provenance[-1].write_text(json.dumps({"input": f"synthetic/{name}.json", "kept": 1}))
    provenance.append(data / "sharegpt.manifest.json")
    provenance[-1].write_text(json.dumps({
        "source": f"https://huggingface.co/datasets/{HUB_DATASET}/resolve/main/sharegpt.txt",
        "bytes": 1, "sha256": "0" * 64}))
    files["provenance"] = provenance
    files["evaluation"].write_text(json.dumps(EVAL))
    files["mmlu"].write_text(json.dumps({"shots": 3, "n": 119, "base": {}, "finetuned": {}}))
    return files


@pytest.fixture(scope="module")
def releases(tiny_meta, tiny_options, base, tmp_path_factory) -> dict[str, list[Path]]:
    """Each kind's release of a random tiny LLaMA, written by the workflow's own tools."""
    root = tmp_path_factory.mktemp("releases")
    step = root / "m-vicuna-onmt_step_321"
    hf = Path(f"{step}.concat_HF")
    call_script("release_model.py", "--model", tiny_meta["onmt"], "--output", hf,
                "--format", "huggingface", "--dtype", "float32",
                "--tokenizer_model", tiny_meta["tokenizer"])
    (hf / ".snakemake_timestamp").write_text("")  # what Snakemake leaves in a directory()
    ggufs = []
    for kind in ("f16", "q8_0"):
        ggufs.append(Path(f"{step}.concat-{kind}.gguf"))
        call_script("release_model.py", "--model", tiny_meta["onmt"], "--output", ggufs[-1],
                    "--format", "gguf", "--gguf_type", kind, "--tokenizer_model", tiny_meta["tokenizer"])
    modelfile = Path(f"{step}.concat.Modelfile")
    call_script("write_modelfile.py", "--gguf", ggufs[1], "--options", tiny_options["py"],
                "--output", modelfile)
    lora = root / "lora.pt"
    torch.save(make_lora(base, rank=5), lora)
    peft = Path(f"{step}_PEFT")
    call_script("release_model.py", "--model", lora, "--output", peft, "--format", "peft",
                "--base_model", hf, "--base_name", "some/base")
    return {"huggingface": [hf], "gguf": [*ggufs, modelfile], "peft": [peft]}


def card_args(run_files, release: list[Path], kind: str, output: Path, *extra) -> list:
    return ["--kind", kind, "--release", *release, "--finetune_config", run_files["finetune_config"],
            "--data_report", run_files["data_report"], "--provenance", *run_files["provenance"],
            "--evaluation", run_files["evaluation"], "--mmlu", run_files["mmlu"],
            "--base_model_dir", "llama/7B", "--output", output, *extra]


def write_card(run_files, releases, kind: str, output: Path, *extra) -> str:
    call_script("model_card.py", *card_args(run_files, releases[kind], kind, output, *extra))
    return (output / "README.md").read_text(encoding="utf-8")


def front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?\n)---\n", card, re.S)
    assert match, card[:300]
    return yaml.safe_load(match.group(1))


def table_rows(card: str, heading: str) -> list[list[str]]:
    """The rows of the first table under `## heading`, as cells."""
    section = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")][2:]


@pytest.fixture(scope="module")
def cards(run_files, releases, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    for kind in releases:
        write_card(run_files, releases, kind, root / kind)
    return {kind: root / kind for kind in releases}


@pytest.mark.parametrize("kind, library", [("huggingface", "transformers"), ("gguf", "gguf"),
                                           ("peft", "peft")])
def test_the_front_matter_is_the_hubs_yaml(cards, kind, library):
    from huggingface_hub import ModelCard

    text = (cards[kind] / "README.md").read_text()
    meta = front_matter(text)
    assert meta == ModelCard(text).data.to_dict()  # the Hub's own parser reads the same
    assert meta["library_name"] == library and meta["pipeline_tag"] == "text-generation"
    assert meta["datasets"] == [HUB_DATASET]  # the corpus fetched from the Hub, and only it
    assert meta["license"] == "FILL-IN-release.license"  # left for the user: no licence made up
    assert "base_model" not in meta  # llama/7B is a path, no Hub id
    assert "vicuna" in meta["tags"] and (kind != "gguf" or "gguf" in meta["tags"])


def test_a_licence_and_base_given_are_stated(run_files, releases, tmp_path):
    text = write_card(run_files, releases, "huggingface", tmp_path / "hub", "--license", "llama2",
                      "--base_hub_id", "meta-llama/Llama-2-7b-hf")
    meta = front_matter(text)
    assert meta["license"] == "llama2" and meta["base_model"] == "meta-llama/Llama-2-7b-hf"
    assert "FILL-IN" not in text


@pytest.mark.parametrize("kind", ["huggingface", "gguf", "peft"])
def test_the_card_states_the_runs_figures(cards, kind):
    text = (cards[kind] / "README.md").read_text()
    recipe = dict(row[:2] for row in table_rows(text, "Recipe"))
    assert recipe["LoRA"].startswith("rank 5, alpha 11 (scale 2.2), dropout 0.05, on "
                                     "linear_values, linear_query")
    assert recipe["steps"] == "321" and recipe["batch"] == "777 tokens x 9 accumulated"
    assert recipe["context"].startswith("613 tokens") and recipe["precision"] == "fp16"
    assert recipe["loss"].startswith("the answers only")
    assert recipe["frozen in 8-bit while training"] == "w_1, w_3 (bnb_8bit)"
    assert "learning rate 0.00042, warm-up 17 steps" in recipe["optimizer"]
    data = {row[0].strip("`"): row for row in table_rows(text, "Data")}
    assert data["alpaca_clean"][2:] == ["`synthetic/alpaca_clean.json`", "7", "4,321", "212,937",
                                        "4,310"]
    assert data["sharegpt"][2].startswith(f"`https://huggingface.co/datasets/{HUB_DATASET}")
    assert data["heldout_sharegpt"][1].startswith("evaluation") and data["valid"][6] == "-"
    assert "for 321 steps on 5,295 examples (alpaca_clean, sharegpt)" in text  # 4310 + 985


@pytest.mark.parametrize("kind", ["huggingface", "gguf", "peft"])
def test_the_evaluation_table_is_eval_json(cards, kind):
    text = (cards[kind] / "README.md").read_text()
    rows = {row[0].strip("`"): row for row in table_rows(text, "Evaluation")}
    assert set(rows) == set(EVAL["base"])
    for metric, row in rows.items():
        assert float(row[1]) == EVAL["base"][metric] and float(row[2]) == EVAL["finetuned"][metric]
    assert "3-shot, 119 questions" in rows["mmlu_loglik_acc"][3]  # mmlu.json's
    assert "`heldout_sharegpt`" in rows["sharegpt_loss"][3] and "`valid`" in rows["valid_loss"][3]
    assert "- `py_ct2_agreement`: 0.9688" in text


@pytest.mark.parametrize("kind", ["huggingface", "gguf", "peft"])
def test_the_folder_holds_the_release_as_hard_links(cards, releases, kind):
    folder = cards[kind]
    release = releases[kind]
    if kind == "gguf":
        expected = {p.name: p for p in release}
    else:
        expected = {str(p.relative_to(release[0])): p for p in release[0].rglob("*")
                    if p.is_file() and not p.name.startswith(".")}
    assert listing(folder) == sorted([*expected, "README.md"])  # no .snakemake_timestamp
    for name, source in expected.items():
        assert os.path.samefile(folder / name, source)
    sizes = table_rows((folder / "README.md").read_text(), "Files")
    assert sorted(row[0].strip("`") for row in sizes) == sorted(expected)


def test_the_gguf_card_names_each_files_type_as_llama_cpp_reads_it(cards, releases):
    from llama_cpp import Llama

    rows = {row[0].strip("`"): row[1] for row in table_rows((cards["gguf"] / "README.md").read_text(),
                                                            "Files")}
    for path in releases["gguf"][:2]:
        llm = Llama(model_path=str(path), verbose=False, n_ctx=64)
        file_type = llm.metadata["general.file_type"]  # llama.cpp's own reading of the file
        assert {"1": "F16", "7": "Q8_0"}[file_type] == rows[path.name]
        llm.close()


def test_the_prompt_shown_is_transformers_rendering_of_the_chat_template(cards):
    from transformers import AutoTokenizer

    text = (cards["huggingface"] / "README.md").read_text()
    shown = re.search(r"## Prompt template\n.*?```text\n(.*?)\n```", text, re.S).group(1)
    tok = AutoTokenizer.from_pretrained(cards["huggingface"])
    message = re.search(r'"content": (".*?")', text).group(1)
    rendered = tok.apply_chat_template([{"role": "user", "content": json.loads(message)}],
                                       tokenize=False, add_generation_prompt=True)
    assert shown == rendered
    assert shown.startswith("<s>" + prompt.TASK) and shown.endswith(prompt.RESPONSE + "\n")
    assert json.dumps(prompt.STOP) in text


def python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, re.S)


def test_the_hf_cards_code_runs_on_the_folder(cards, capsys):
    code = python_blocks((cards["huggingface"] / "README.md").read_text())[0]
    exec(code.replace('"OWNER/NAME"', repr(str(cards["huggingface"]))), {})
    assert capsys.readouterr().out  # a (random) answer was generated and decoded


def run_python(code: str, cwd: Path):
    """The code in a Python of its own (llama.cpp may crash, and must not take pytest along)."""
    return run([sys.executable, "-c", code], cwd=cwd, env=env(), timeout=300)


def test_the_gguf_cards_code_runs_in_the_folder(cards):
    """The card's llama-cpp-python code as written, on the F16 file: the file's chat template
    is applied by llama-cpp-python itself, and an answer comes back."""
    code = python_blocks((cards["gguf"] / "README.md").read_text())[0]
    assert "m-vicuna-onmt_step_321.concat-q8_0.gguf" in code  # the smallest file is shown
    result = run_python(code.replace("concat-q8_0.gguf", "concat-f16.gguf"), cards["gguf"])
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-2000:]


def test_the_gguf_cards_code_runs_on_the_file_it_names(cards):
    """As written (the Q8_0 file): the crash the card warns of, where this CPU has it."""
    text = (cards["gguf"] / "README.md").read_text()
    assert "segmentation fault" in text and "F16 file ran" in text
    result = run_python(python_blocks(text)[0], cards["gguf"])
    if result.returncode == -signal.SIGSEGV:
        pytest.xfail("llama-cpp-python's weight repacking crashes on Q8_0 on this CPU (the card "
                     "says so; vicuna.weights.llamacpp turns it off)")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-2000:]


def test_the_peft_card_names_the_adapters_base(cards):
    text = (cards["peft"] / "README.md").read_text()
    assert "`some/base`" in text and 'from_pretrained("some/base")' in text
    shape = dict(row[:2] for row in table_rows(text, "Base"))
    assert shape["rank"] == "5" and shape["modules"] == "q_proj"


def test_a_run_without_figures_says_so(run_files, releases, tmp_path):
    """The 7B config has no references, no held-out corpus: eval.json holds the agreement only."""
    bare = tmp_path / "eval.json"
    bare.write_text(json.dumps({"base": {}, "finetuned": {}, "py_ct2_agreement": 0.5}))
    args = card_args({**run_files, "evaluation": bare}, releases["peft"], "peft", tmp_path / "hub")
    at = args.index("--mmlu")
    call_script("model_card.py", *args[:at], *args[at + 2:])
    text = (tmp_path / "hub" / "README.md").read_text()
    assert "no figure of either model" in text and "- `py_ct2_agreement`: 0.5 (" in text
    assert "mmlu.json" not in text and "| metric |" not in text


# --- refusals -----------------------------------------------------------------------------------

def test_missing_run_files_are_named_and_nothing_is_written(run_files, releases, tmp_path):
    gone = {"evaluation": tmp_path / "eval.json", "data_report": tmp_path / "stats.tsv"}
    files = {**run_files, **gone}
    out = tmp_path / "hub"
    message = fails("model_card.py", *card_args(files, releases["huggingface"], "huggingface", out),
                    culprit=gone["evaluation"])
    assert str(gone["data_report"]) in message
    assert not out.exists()


def test_a_missing_release_is_named(run_files, tmp_path):
    missing = tmp_path / "m_step_1.concat_HF"
    fails("model_card.py", *card_args(run_files, [missing], "huggingface", tmp_path / "hub"),
          culprit=missing)
    assert not (tmp_path / "hub").exists()


def test_an_evaluation_of_another_kind_is_named(run_files, releases, tmp_path):
    bad = tmp_path / "eval.json"
    bad.write_text(json.dumps({"finetuned": {}}))
    message = fails("model_card.py", *card_args({**run_files, "evaluation": bad},
                                                releases["peft"], "peft", tmp_path / "hub"),
                    culprit=bad)
    assert "'base'" in message and not (tmp_path / "hub").exists()


def test_a_folder_of_other_files_is_never_replaced(run_files, releases, tmp_path):
    out = tmp_path / "hub"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    fails("model_card.py", *card_args(run_files, releases["peft"], "peft", out, "--force"),
          culprit=out)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_rerun_replaces_the_folder_snakemake_left_without_its_card(run_files, releases, tmp_path):
    """Snakemake removes the card (the rule's output) before a rerun; the links left are
    replaced, and a GGUF type no longer released leaves the folder."""
    out = tmp_path / "hub"
    write_card(run_files, releases, "gguf", out)
    (out / "README.md").unlink()
    fewer = [releases["gguf"][0]]
    result = run_script("model_card.py", *map(str, card_args(run_files, fewer, "gguf", out, "--force")))
    assert "hard links" in result.stdout
    assert listing(out) == sorted(["README.md", fewer[0].name])
