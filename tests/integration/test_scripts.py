"""Every script refuses bad input in one line, `error: ...`, naming the file, record, option or
tensor at fault; the exit status is not 0; nothing that looks complete (nor a temporary file)
is left, and no output destroys what it did not make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CHECKPOINT_FAULTS, fails, listing, make_lora, run_script

from vicuna.weights import checkpoint


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
    assert CHECKPOINT_FAULTS[bad] in message
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


def test_lora_that_fits_merges(base, tiny_meta, tmp_path):
    """The checks above do not refuse a good pair."""
    torch.save(make_lora(base), tmp_path / "lora.pt")
    run_script("lora_weights.py", "--base_model", str(tiny_meta["onmt"]), "--lora_weights",
               str(tmp_path / "lora.pt"), "--output", str(tmp_path / "merged.pt"))
    assert checkpoint.load(tmp_path / "merged.pt", kind="full")["generator"] is not None


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
        "model_card.py": ["--kind", "peft", "--release", tmp_path, "--finetune_config", tok,
                          "--data_report", tok, "--evaluation", m, "--base_model_dir", "x",
                          "--output", out / "hub"],
    }[script]


SCRIPTS = ["flatten_dataset.py", "extract_vocabulary.py", "lora_weights.py", "release_model.py",
           "convert_llama.py", "simple_inference.py", "write_finetune_config.py",
           "write_translate_opts.py", "data_report.py", "training_curves.py", "heldout_loss.py",
           "evaluate.py", "model_card.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_input_is_named(script, tiny_meta, tmp_path):
    fails(script, *missing_input_args(script, tmp_path, tiny_meta), culprit=tmp_path / "missing")
    assert not (tmp_path / "out").exists()


def test_options_file_that_is_not_yaml_stops_inference(tiny_meta, tmp_path):
    (tmp_path / "p.txt").write_text("Hello\n")
    (tmp_path / "opts.yaml").write_text("model: [a\n")
    fails("simple_inference.py", "-input_file", tmp_path / "p.txt", "-inference_config_file",
          tmp_path / "opts.yaml", "-inference_mode", "ct2", "-output_dir", tmp_path / "out",
          culprit=tmp_path / "opts.yaml")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ct2_release(tiny_meta, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ct2") / "model"
    run_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(out),
               "--quantization", "float32")
    return out


@pytest.mark.parametrize("mode", ["ct2", "py", "gguf"])
def test_long_prompt_is_cut_and_said_so(mode, ct2_release, tiny_meta, tiny_options, tmp_path):
    model = {"ct2": ct2_release, "py": tiny_meta["onmt"], "gguf": tiny_options["gguf_release"]}[mode]
    extra = {"ct2": {"device": "cpu", "cpu_threads": 1}, "gguf": {"cpu_threads": 1},
             "py": {"transforms": ["sentencepiece"], "tgt_subword_model": str(tiny_meta["tokenizer"]),
                    "gpu": -1, "world_size": 1, "gpu_ranks": [], "output": "/dev/null"}}[mode]
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
        "model_card.py": ["--kind", "peft", "--release", tmp_path, "--finetune_config", tok,
                          "--data_report", tok, "--evaluation", tok, "--base_model_dir", "x",
                          "--output", out],
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
