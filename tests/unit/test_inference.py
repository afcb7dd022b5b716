"""Batch inference and the engines: one request's answer is the same alone or batched with any
other (CTranslate2's one-token-prompt trap avoided); a blank line, a tokenizer that does not
fit the model, and a bad options file each a named error; long prompts cut from the left."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from helpers import LLAMA_TOKENIZER, REPO, fails

from vicuna import prompt
from vicuna.serve import engines, inference
from vicuna.serve import options as vicuna_options
from vicuna.serve.engines.base import prompt_pieces

PROMPTS = [prompt.conversation([], f"Repeat these words.\n{w}")
           for w in ("cat dog", "sun moon star", "red", "one two three four")]


@pytest.fixture(scope="module")
def options(tiny_options) -> dict[str, object]:
    return tiny_options


def test_ctranslate2_still_corrupts_a_batch_holding_a_one_token_prompt(options, tiny_meta):
    """The trap the ct2 engine works around, seen through CTranslate2 directly: if this stops
    failing in a new CTranslate2, the workaround can go."""
    import ctranslate2

    from vicuna import tokenizer

    sp = tokenizer.load(tiny_meta["tokenizer"])
    generator = ctranslate2.Generator(str(options["ct2_release"]), device="cpu", intra_threads=1)
    kw = {"max_length": 12, "include_prompt_in_result": False, "beam_size": 1}
    tokens = [prompt_pieces(sp, p) for p in PROMPTS]
    alone = [generator.generate_batch([t], **kw)[0].sequences[0] for t in tokens]
    assert len({tuple(a) for a in alone}) > 1  # the prompts' answers differ: a fair test
    batched = [r.sequences[0] for r in generator.generate_batch([*tokens, ["<s>"]], **kw)][:-1]
    assert batched != alone
    two_tokens = [r.sequences[0] for r in generator.generate_batch([*tokens, ["<s>", "▁"]], **kw)]
    assert two_tokens[:-1] == alone


@pytest.mark.parametrize("mode", ["ct2", "py", "gguf"])
def test_an_answer_is_the_same_alone_or_batched_with_any_prompt(mode, options):
    engine = engines.load(mode, options[mode])
    alone = [engine.generate([p])[0].text for p in PROMPTS]
    odds = ["", " ", "\n", "x", PROMPTS[0] * 3]
    if mode == "py":  # OpenNMT-py drops blank examples: its engine refuses them, named
        for blank in ("", " ", "\n"):
            with pytest.raises(ValueError, match="prompt 2 is empty"):
                engine.generate([*PROMPTS[:2], blank, *PROMPTS[2:]])
            odds.remove(blank)
    for odd in odds:
        batch = [*PROMPTS[:2], odd, *PROMPTS[2:]]
        answers = [a.text for a in engine.generate(batch)]
        assert answers[:2] + answers[3:] == alone, f"{odd!r} in the batch changed the others"
        assert answers[2] == engine.generate([odd])[0].text
    engine.close()


@pytest.mark.parametrize("mode", ["ct2", "py"])
@pytest.mark.parametrize("blank", ["", "   ", "｟newline｠"])
def test_a_blank_line_in_the_input_file_is_a_named_error(mode, blank, options, tmp_path):
    inputs = tmp_path / "prompts.txt"
    inputs.write_text("".join(prompt.to_line(p) + "\n" for p in PROMPTS[:2]) + blank + "\n"
                      + prompt.to_line(PROMPTS[2]) + "\n", encoding="utf-8")
    message = fails("simple_inference.py", "-input_file", inputs, "-inference_config_file",
                    options[mode], "-inference_mode", mode, "-output_dir", tmp_path / "out",
                    culprit=f"{inputs} line 3: empty prompt")
    assert message == f"error: {inputs} line 3: empty prompt"
    assert not (tmp_path / "out").exists()


def mismatched(options: dict, mode: str, tmp_path) -> object:
    """The mode's options file with the real 32,000-piece LLaMA tokenizer on the tiny model."""

    opts = yaml.safe_load(options[mode].read_text())
    opts["src_subword_model"] = opts["tgt_subword_model"] = str(LLAMA_TOKENIZER)
    if mode != "py":  # OpenNMT-py's own key
        opts.pop("tgt_subword_model")
    path = tmp_path / f"mismatched_{mode}.yaml"
    path.write_text(yaml.safe_dump(opts))
    return path


needs_llama = pytest.mark.skipif(not LLAMA_TOKENIZER.is_file(),
                                 reason="real LLaMA tokenizer fixture absent")


@needs_llama
@pytest.mark.parametrize("mode", ["ct2", "py", "gguf"])
def test_a_tokenizer_that_does_not_fit_the_model_is_refused_by_inference(mode, options,
                                                                          tmp_path):
    inputs = tmp_path / "prompts.txt"
    inputs.write_text(prompt.to_line(PROMPTS[0]) + "\n", encoding="utf-8")
    path = mismatched(options, mode, tmp_path)
    message = fails("simple_inference.py", "-input_file", inputs, "-inference_config_file",
                    path, "-inference_mode", mode, "-output_dir", tmp_path / "out", culprit=path)
    assert "has 32000 pieces" in message and "a vocabulary of 320" in message
    assert not (tmp_path / "out").exists()


@needs_llama
@pytest.mark.parametrize("script", ["serve_api.py", "chatbot.py"])
@pytest.mark.parametrize("mode", ["ct2", "py"])
def test_a_tokenizer_that_does_not_fit_the_model_stops_the_servers(script, mode, options,
                                                                    tmp_path):
    path = mismatched(options, mode, tmp_path)
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script),
                             "-inference_config_file", str(path), "-inference_mode", mode],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}: the tokenizer") and "32000 pieces" in last


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
        vicuna_options.load(path)
    assert str(e.value).startswith(str(path)) and words in str(e.value)
    assert "\n" not in str(e.value)


def test_fit_prompt_keeps_the_last_tokens(tiny_meta):
    from vicuna import prompt, tokenizer

    sp = tokenizer.load(tiny_meta["tokenizer"])
    line = prompt.to_line("word " * 200 + "\nthe question at the end?")
    short, note = inference.fit_prompt(sp, line, budget=40)
    assert note["prompt_tokens"] > 40 and note["kept_tokens"] <= 40
    assert short.endswith("the question at the end?")
    assert inference.fit_prompt(sp, "Hi", budget=40) == ("Hi", None)
