"""Every bad input a named error, and no output destroys what it did not make (issue #13).

Each user-caused error ends in one line, `error: ...`, naming the file, record, option or tensor
at fault; the exit status is not 0; nothing that looks complete (nor a temporary file) is left.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, run_script

from vicuna import checkpoint, config_check, files, inference, options

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def fails(script: str, *args, culprit: str | Path, cwd: Path | None = None) -> str:
    """Run a script that must refuse: exit != 0, one `error:` line naming `culprit`."""
    result = run_script(script, *map(str, args), check=False, cwd=cwd)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(culprit) in last, result.stderr
    return last


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- Small real objects --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tiny_meta) -> dict:
    return checkpoint.load(tiny_meta["onmt"], kind="full")


def make_lora(base: dict, *, rank: int = 2, bad_shape: bool = False, vocab_extra: int = 0) -> dict:
    """A LoRA step checkpoint as OpenNMT-py saves one: lora_A [r, in], lora_B [out, r] only."""
    opt = copy.deepcopy(base["opt"])
    opt.lora_layers, opt.lora_rank, opt.lora_alpha = ["linear_query"], rank, 2 * rank
    torch.manual_seed(0)
    model = {}
    for i in range(opt.dec_layers):
        prefix = f"decoder.transformer_layers.{i}.self_attn.linear_query."
        out_dim, in_dim = base["model"][prefix + "weight"].shape
        model[prefix + "lora_A"] = torch.randn(rank, in_dim)
        model[prefix + "lora_B"] = torch.randn(out_dim + (1 if bad_shape else 0), rank)
    vocab = copy.deepcopy(base["vocab"])
    for key in ("src", "tgt"):
        vocab[key] = vocab[key] + [f"extra{j}" for j in range(vocab_extra)]
    return {"model": model, "generator": None, "vocab": vocab, "opt": opt, "optim": None}


@pytest.fixture(scope="module")
def bad_files(tiny_meta, base, tmp_path_factory) -> dict[str, Path]:
    """One file of each wrong kind a user can give where a checkpoint is expected."""
    root = tmp_path_factory.mktemp("bad_checkpoints")
    data = tiny_meta["onmt"].read_bytes()
    paths = {name: root / f"{name}.pt" for name in
             ("empty", "truncated", "text", "meta", "lora", "pickle_list")}
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["text"].write_text("model: not a checkpoint\n")
    paths["meta"].write_bytes((tiny_meta["meta"] / "consolidated.00.pth").read_bytes())
    torch.save(make_lora(base), paths["lora"])
    torch.save([1, 2, 3], paths["pickle_list"])
    paths["missing"] = root / "missing.pt"
    return paths


EXPECTED = {  # bad file -> words of the one-line message
    "missing": "no such file",
    "empty": "empty file",
    "truncated": "not a torch checkpoint",
    "text": "not a torch checkpoint",
    "meta": "not an OpenNMT-py checkpoint (no model, vocab, opt)",
    "lora": "merge it into its base first with lora_weights.py",
    "pickle_list": "not an OpenNMT-py checkpoint",
}


@pytest.mark.parametrize("bad", EXPECTED)
def test_checkpoint_load_names_the_file_and_the_fault(bad_files, bad):
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        checkpoint.load(bad_files[bad], kind="full")
    message = str(e.value)
    assert message.startswith(str(bad_files[bad])) and EXPECTED[bad] in message
    assert "\n" not in message


def test_full_checkpoint_where_lora_expected(tiny_meta):
    with pytest.raises(ValueError, match="not a LoRA step checkpoint"):
        checkpoint.load(tiny_meta["onmt"], kind="lora")


# --- Corpora -------------------------------------------------------------------------------------

@pytest.mark.parametrize("records, on_error, words", [
    ([], "stop", "no record in it"),
    ([{"instruction": "x"}, {"instruction": "y", "output": " "}], "skip", "every record was skipped"),
])
def test_empty_or_all_skipped_corpus_writes_nothing(tmp_path, records, on_error, words):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(records))
    out = tmp_path / "out" / "corpus.txt"
    message = fails("flatten_dataset.py", "--format", "alpaca", "--on_error", on_error,
                    "--report", tmp_path / "out" / "report.json", src, out, culprit=src)
    assert words in message
    assert not (tmp_path / "out").exists() or listing(tmp_path / "out") == []


# --- Checkpoints of the wrong kind, given to each tool ---------------------------------------------

def options_file(tmp_path: Path, tiny_meta, model: Path, **extra) -> Path:
    path = tmp_path / "opts.yaml"
    path.write_text(yaml.safe_dump({"model": str(model), "src_subword_model": str(tiny_meta["tokenizer"]),
                                    "max_length": 4, "batch_size": 2, "beam_size": 1,
                                    "random_sampling_topk": 1, "seed": 1, **extra}))
    return path


def checkpoint_tool(script: str, bad: Path, tmp_path: Path, tiny_meta, lora: Path) -> list:
    out = tmp_path / "out"
    return {
        "lora_weights.py": ["--base_model", bad, "--lora_weights", lora, "--output", out / "m.pt"],
        "release_model.py": ["--model", bad, "--output", out / "ct2"],
        "extract_vocabulary.py": ["-model", bad, "-out_file", out / "vocab.txt"],
        "simple_inference.py": ["-input_file", tiny_meta["root"] / "prompts.txt",
                                "-inference_config_file", options_file(tmp_path, tiny_meta, bad),
                                "-inference_mode", "py", "-output_dir", out],
    }[script]


@pytest.mark.parametrize("script", ["lora_weights.py", "release_model.py", "extract_vocabulary.py",
                                    "simple_inference.py"])
@pytest.mark.parametrize("bad", ["truncated", "meta", "empty"])
def test_bad_checkpoint_is_named_by_every_tool(script, bad, bad_files, tiny_meta, tmp_path):
    (tiny_meta["root"] / "prompts.txt").write_text("Hello\n")
    args = checkpoint_tool(script, bad_files[bad], tmp_path, tiny_meta, bad_files["lora"])
    message = fails(script, *args, culprit=bad_files[bad])
    assert EXPECTED[bad] in message
    assert not (tmp_path / "out").exists()


def test_unmerged_lora_given_to_release_says_merge_first(bad_files, tmp_path):
    message = fails("release_model.py", "--model", bad_files["lora"], "--output", tmp_path / "ct2",
                    culprit=bad_files["lora"])
    assert "merge it into its base first with lora_weights.py" in message
    assert listing(tmp_path) == []


def test_lora_given_to_py_inference_says_merge_first(bad_files, tiny_meta, tmp_path):
    (tmp_path / "prompts.txt").write_text("Hello\n")
    opts = options_file(tmp_path, tiny_meta, bad_files["lora"])
    message = fails("simple_inference.py", "-input_file", tmp_path / "prompts.txt",
                    "-inference_config_file", opts, "-inference_mode", "py",
                    "-output_dir", tmp_path / "out", culprit=bad_files["lora"])
    assert str(opts) in message and "merge it" in message and not (tmp_path / "out").exists()


def test_full_checkpoint_given_as_lora(tiny_meta, tmp_path):
    message = fails("lora_weights.py", "--base_model", tiny_meta["onmt"], "--lora_weights",
                    tiny_meta["onmt"], "--output", tmp_path / "m.pt", culprit=tiny_meta["onmt"])
    assert "not a LoRA step checkpoint" in message and listing(tmp_path) == []


# --- Base and LoRA that do not fit ---------------------------------------------------------------

@pytest.mark.parametrize("case, culprit", [
    ("shape", "decoder.transformer_layers.0.self_attn.linear_query.lora_B"),
    ("vocabulary", "vocabulary of"),
])
def test_lora_that_does_not_fit_its_base_is_refused(case, culprit, base, tiny_meta, tmp_path):
    lora = make_lora(base, bad_shape=case == "shape", vocab_extra=5 if case == "vocabulary" else 0)
    torch.save(lora, tmp_path / "lora.pt")
    out = tmp_path / "out" / "merged.pt"
    message = fails("lora_weights.py", "--base_model", tiny_meta["onmt"], "--lora_weights",
                    tmp_path / "lora.pt", "--output", out, culprit=culprit)
    assert str(tmp_path / "lora.pt") in message and str(tiny_meta["onmt"]) in message
    assert not (tmp_path / "out").exists()


def test_lora_of_another_architecture_names_the_option(base):
    lora = make_lora(base)
    lora["opt"].heads = base["opt"].heads * 2
    with pytest.raises(ValueError, match="option heads is"):
        from vicuna import lora as lora_module

        lora_module.merge(base, lora)


def test_lora_that_fits_merges(base, tiny_meta, tmp_path):
    """The checks above do not refuse a good pair."""
    torch.save(make_lora(base), tmp_path / "lora.pt")
    run_script("lora_weights.py", "--base_model", str(tiny_meta["onmt"]), "--lora_weights",
               str(tmp_path / "lora.pt"), "--output", str(tmp_path / "merged.pt"))
    assert checkpoint.load(tmp_path / "merged.pt", kind="full")["generator"] is not None


# --- Missing inputs, every script --------------------------------------------------------------

def missing_input_args(script: str, tmp_path: Path, tiny_meta) -> list:
    m, out = tmp_path / "missing", tmp_path / "out"
    tok = tiny_meta["tokenizer"]
    return {
        "flatten_dataset.py": ["--format", "alpaca", m, out / "c.txt"],
        "extract_vocabulary.py": ["-model", m, "-out_file", out / "v.txt"],
        "lora_weights.py": ["--base_model", m, "--lora_weights", m, "--output", out / "m.pt"],
        "release_model.py": ["--model", m, "--output", out / "ct2"],
        "convert_llama.py": ["--model_dir", m, "--tokenizer_model", tok, "--output", out / "c.pt"],
        "simple_inference.py": ["-input_file", m, "-inference_config_file", m,
                                "-inference_mode", "ct2", "-output_dir", out],
        "write_finetune_config.py": ["--model_dir", tiny_meta["meta"], "--vocab", m,
                                     "--base_checkpoint", tiny_meta["onmt"], "--tokenizer_model", tok,
                                     "--corpus", f"a={tok}:1", "--save_model", "x",
                                     "--tensorboard_dir", "y", "--train_json", "{}",
                                     "--output", out / "f.yaml"],
        "write_translate_opts.py": ["--mode", "ct2", "--model", "x", "--tokenizer_model", m,
                                    "--inference_json", "{}", "--output", out / "t.yaml"],
        "data_report.py": ["--corpus", "a", m, "--tokenizer_model", tok, "--seq_length", "8",
                           "--stats", out / "s.tsv", "--histogram", out / "h.png"],
        "training_curves.py": ["--log_dir", m, "--output", out / "c.png"],
        "heldout_loss.py": ["--base", tiny_meta["onmt"], "--finetuned", tiny_meta["onmt"],
                            "--tokenizer_model", tok, "--heldout", "valid", m, "--json", out / "h.json"],
        "evaluate.py": ["--base", tiny_meta["onmt"], "--prompts", tok, "--predictions_py", m,
                        "--predictions_ct2", m, "--translate_opts_py", m, "--json", out / "e.json",
                        "--table", out / "e.tsv"],
    }[script]


SCRIPTS = ["flatten_dataset.py", "extract_vocabulary.py", "lora_weights.py", "release_model.py",
           "convert_llama.py", "simple_inference.py", "write_finetune_config.py",
           "write_translate_opts.py", "data_report.py", "training_curves.py", "heldout_loss.py",
           "evaluate.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_input_is_named(script, tiny_meta, tmp_path):
    fails(script, *missing_input_args(script, tmp_path, tiny_meta), culprit=tmp_path / "missing")
    assert not (tmp_path / "out").exists()


# --- Options files -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("model: a\nmax_length: 4\n", "option 'src_subword_model' is missing"),
    ("model: [a\n", "not a YAML file"),
    ("- a\n- b\n", "not a mapping of options"),
    ("model: a\nsrc_subword_model: b\nmax_length: 4.0\n", "option 'max_length' is 4.0"),
    ("model: a\nsrc_subword_model: b\nmax_length: 64\nmax_context_length: 64\n", "leaves no room"),
])
def test_bad_options_file_is_named(tmp_path, text, words):
    path = tmp_path / "translate_opts_py.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        options.load(path)
    assert str(e.value).startswith(str(path)) and words in str(e.value)
    assert "\n" not in str(e.value)


def test_options_file_that_is_not_yaml_stops_inference(tiny_meta, tmp_path):
    (tmp_path / "p.txt").write_text("Hello\n")
    (tmp_path / "opts.yaml").write_text("model: [a\n")
    fails("simple_inference.py", "-input_file", tmp_path / "p.txt", "-inference_config_file",
          tmp_path / "opts.yaml", "-inference_mode", "ct2", "-output_dir", tmp_path / "out",
          culprit=tmp_path / "opts.yaml")
    assert not (tmp_path / "out").exists()


# --- Prompts longer than the context ------------------------------------------------------------

def test_fit_prompt_keeps_the_last_tokens(tiny_meta):
    from vicuna import prompt, tokenizer

    sp = tokenizer.load(tiny_meta["tokenizer"])
    line = prompt.to_line("word " * 200 + "\nthe question at the end?")
    short, note = inference.fit_prompt(sp, line, budget=40)
    assert note["prompt_tokens"] > 40 and note["kept_tokens"] <= 40
    assert short.endswith("the question at the end?")
    assert inference.fit_prompt(sp, "Hi", budget=40) == ("Hi", None)


@pytest.fixture(scope="module")
def ct2_release(tiny_meta, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ct2") / "model"
    run_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(out),
               "--quantization", "float32")
    return out


@pytest.mark.parametrize("mode", ["ct2", "py"])
def test_long_prompt_is_cut_and_said_so(mode, ct2_release, tiny_meta, tmp_path):
    model = ct2_release if mode == "ct2" else tiny_meta["onmt"]
    extra = {"device": "cpu", "threads": 1} if mode == "ct2" else {
        "transforms": ["sentencepiece"], "tgt_subword_model": str(tiny_meta["tokenizer"]),
        "gpu": -1, "world_size": 1, "gpu_ranks": [], "output": "/dev/null"}
    opts = options_file(tmp_path, tiny_meta, model, max_context_length=48, **extra)
    (tmp_path / "p.txt").write_text("Hello\n" + "word " * 100 + "question?\n")
    result = run_script("simple_inference.py", "-input_file", str(tmp_path / "p.txt"),
                        "-inference_config_file", str(opts), "-inference_mode", mode,
                        "-output_dir", str(tmp_path / "out"))
    assert "warning:" in result.stderr and "line 2" in result.stderr
    report = json.loads((tmp_path / "out" / f"predictions_{mode}.json").read_text())
    assert "truncated" not in report["answers"][0]
    assert report["answers"][1]["truncated"]["kept_tokens"] <= 48 - 4
    assert report["truncated_prompts"] == 1


# --- Outputs: never destroy what the tool did not make -------------------------------------------

def existing_output_args(script: str, tmp_path: Path, tiny_meta, lora: Path, out: Path) -> list:
    tok = tiny_meta["tokenizer"]
    (tmp_path / "in.json").write_text(json.dumps([{"instruction": "i", "output": "o"}]))
    (tmp_path / "corpus.txt").write_text("a line\n")
    (tmp_path / "p.txt").write_text("Hello\n")
    return {
        "flatten_dataset.py": ["--format", "alpaca", tmp_path / "in.json", out],
        "extract_vocabulary.py": ["-model", tiny_meta["onmt"], "-out_file", out],
        "lora_weights.py": ["--base_model", tiny_meta["onmt"], "--lora_weights", lora,
                            "--output", out],
        "release_model.py": ["--model", tiny_meta["onmt"], "--output", out],
        "convert_llama.py": ["--model_dir", tiny_meta["meta"], "--tokenizer_model", tok,
                             "--output", out, "--force"],
        "simple_inference.py": ["-input_file", tmp_path / "p.txt", "-inference_config_file",
                                options_file(tmp_path, tiny_meta, tiny_meta["onmt"]),
                                "-inference_mode", "py", "-output_dir", out.parent],
        "write_finetune_config.py": ["--model_dir", tiny_meta["meta"], "--vocab", tmp_path / "corpus.txt",
                                     "--base_checkpoint", tiny_meta["onmt"], "--tokenizer_model", tok,
                                     "--corpus", f"a={tmp_path / 'corpus.txt'}:1", "--save_model", "x",
                                     "--tensorboard_dir", "y", "--train_json", "{}", "--output", out],
        "write_translate_opts.py": ["--mode", "ct2", "--model", "x", "--tokenizer_model", tok,
                                    "--inference_json", "{}", "--output", out],
        "data_report.py": ["--corpus", "a", tmp_path / "corpus.txt", "--tokenizer_model", tok,
                           "--seq_length", "8", "--stats", tmp_path / "s.tsv", "--histogram", out],
        "training_curves.py": ["--log_dir", tmp_path, "--output", out],
        "heldout_loss.py": ["--base", tiny_meta["onmt"], "--finetuned", tiny_meta["onmt"],
                            "--tokenizer_model", tok, "--heldout", "valid", tmp_path / "corpus.txt",
                            "--json", out],
        "evaluate.py": ["--base", tiny_meta["onmt"], "--prompts", tmp_path / "p.txt",
                        "--predictions_py", tmp_path / "p.txt", "--predictions_ct2", tmp_path / "p.txt",
                        "--translate_opts_py", tmp_path / "p.txt", "--json", out,
                        "--table", tmp_path / "e.tsv"],
    }[script]


@pytest.mark.parametrize("script", SCRIPTS)
def test_existing_directory_as_output_is_kept(script, bad_files, tiny_meta, tmp_path):
    out = tmp_path / "work" / ("predictions_py.txt" if script == "simple_inference.py" else "output")
    out.mkdir(parents=True)
    (out / "precious.txt").write_text("my notes")
    args = existing_output_args(script, tmp_path, tiny_meta, bad_files["lora"], out)
    fails(script, *args, culprit=out)
    assert (out / "precious.txt").read_text() == "my notes"
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_force_never_deletes_a_directory_of_other_files(tiny_meta, tmp_path):
    out = tmp_path / "ct2"
    out.mkdir()
    (out / "precious.txt").write_text("my notes")
    fails("release_model.py", "--model", tiny_meta["onmt"], "--output", out, "--force",
          "--quantization", "float32", culprit=out)
    assert listing(tmp_path) == ["ct2", "ct2/precious.txt"]


def test_force_replaces_a_ctranslate2_model_directory(ct2_release, tiny_meta, tmp_path):
    import shutil

    out = Path(shutil.copytree(ct2_release, tmp_path / "ct2"))
    fails("release_model.py", "--model", tiny_meta["onmt"], "--output", out, culprit=out)
    run_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(out),
               "--force", "--quantization", "int8")
    assert json.loads((out / "config.json").read_text()) and listing(tmp_path)[0] == "ct2"
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]


def test_atomic_path_kinds(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("old")
    files.write_text(text, "new")  # its own kind: replaced
    assert text.read_text() == "new"
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\x00\x01binary")
    with pytest.raises(FileExistsError, match=f"{binary}: exists"):
        files.write_text(binary, "new")
    files.write_text(binary, "new", force=True)
    assert binary.read_text() == "new"
    empty = tmp_path / "empty"
    empty.mkdir()
    files.write_text(empty, "fine")  # an empty directory holds nothing to lose
    assert empty.read_text() == "fine"
    link_target = tmp_path / "target"
    link_target.mkdir()
    (link_target / "keep").write_text("keep")
    (tmp_path / "link").symlink_to(link_target)
    files.write_text(tmp_path / "link", "x", force=True)  # replaces the link, not its target
    assert (link_target / "keep").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "empty", "link", "target"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), files.atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert listing(tmp_path) == []


# --- Config values -------------------------------------------------------------------------------

@pytest.fixture
def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_configs_are_valid(config):
    config_check.validate(config, SCHEMA)
    config_check.validate(yaml.safe_load((REPO / "configs" / "llama7b-vicuna.yaml").read_text()),
                          SCHEMA)


@pytest.mark.parametrize("yaml_text, words", [
    ("train_steps: 800.0", "train.train_steps: 800.0 is not of type 'integer'"),
    ("learning_rate: 2e-5", "write 2.0e-5: YAML reads 2e-5 without a dot"),
    ("train_steps: true", "train.train_steps: True is not of type 'integer'"),
])
def test_yaml_number_traps_are_named(config, yaml_text, words):
    config["train"].update(yaml.safe_load(yaml_text))  # as YAML reads it
    with pytest.raises(ValueError) as e:
        config_check.validate(config, SCHEMA)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_compute_type_is_one_of_ctranslate2s(config):
    config["inference"]["compute_type"] = "int4"
    with pytest.raises(ValueError, match=r"inference.compute_type: 'int4' is not one of"):
        config_check.validate(config, SCHEMA)
    config["inference"]["compute_type"] = "int8_float16"
    config_check.validate(config, SCHEMA)


def test_every_fault_is_named_in_one_message(config):
    config["train"]["lora"].pop("rank")
    config["train"]["learning_rat"] = 0.1
    with pytest.raises(ValueError) as e:
        config_check.validate(config, SCHEMA)
    assert "train.lora: 'rank' is a required property" in str(e.value)
    assert "'learning_rat' was unexpected" in str(e.value)
