"""scripts/chatbot.py as it starts, for real: on a random tiny LLaMA's CTranslate2 release
quantized as the workflow releases it (int8_float16) and the default compute type, on this CPU.
Its console names the project's flag (--share), not gradio's API; its temperature slider starts
at 0 (greedy) for greedy options; CTranslate2 picks the compute type the CPU runs without
warning at every start. In gguf mode (llama.cpp) the page answers what the engine streams."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import call_script, serve_chatbot

from vicuna.serve import engines
from vicuna.serve.engines import ct2


@pytest.fixture(scope="module")
def int8_options(tiny_meta, tiny_options, tmp_path_factory) -> Path:
    """tiny_options' ct2 options file on an int8_float16 release, compute_type default."""
    root = tmp_path_factory.mktemp("int8_release")
    release = root / "tiny-ct2-int8"
    call_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(release),
                "--quantization", "int8_float16")
    opts = yaml.safe_load(tiny_options["ct2"].read_text())
    assert opts["compute_type"] == "default"
    path = root / "translate_opts_ct2.yaml"
    path.write_text(yaml.safe_dump({**opts, "model": str(release)}))
    return path


def test_the_releases_compute_type_is_read_from_its_model_bin(int8_options, tiny_options):
    release = Path(yaml.safe_load(int8_options.read_text())["model"])
    assert ct2.saved_compute_type(release / "model.bin") == "int8_float16"
    assert ct2.saved_compute_type(tiny_options["ct2_release"] / "model.bin") == "float32"
    cpu = {"int16", "int8", "float32", "int8_float32"}
    assert ct2.supported_compute_type("int8_float16", cpu) == "int8_float32"
    assert ct2.supported_compute_type("float16", cpu) == "float32"
    assert ct2.supported_compute_type("int8_float16", cpu | {"int8_float16"}) == "int8_float16"
    assert ct2.supported_compute_type(None, cpu) == "default"


def test_default_compute_type_on_the_cpu_keeps_int8_and_warns_nothing(int8_options, capfd):
    engine = engines.load("ct2", int8_options)
    assert engine.generator.compute_type == "int8_float32"
    assert engine.generate(["Repeat these words.\ncat dog"])[0].tokens > 0
    engine.close()
    err = capfd.readouterr().err
    assert "int8_float16" not in err and "efficient" not in err, err


def test_the_chatbot_starts_with_the_projects_hints_and_a_greedy_temperature(int8_options,
                                                                           tmp_path):
    log = tmp_path / "chatbot.log"
    for url in serve_chatbot(int8_options, log):
        with urllib.request.urlopen(f"{url}config", timeout=10) as r:
            config = json.load(r)
    slider = next(c["props"] for c in config["components"]
                  if c["props"].get("elem_id") == "temperature")
    assert slider["value"] == 0 and slider["minimum"] == 0
    console = log.read_text()
    assert "share=True" not in console and "--share" in console, console
    assert "int8_float16" not in console and "efficient" not in console, console


def test_the_chatbot_in_gguf_mode_streams_the_engines_answer(tiny_options, tmp_path):
    """`make chat MODE=gguf`: the page, driven through gradio's own client, answers a message
    with the gguf engine's answer to the chat prompt, cut at the stop rule as it streams."""
    from gradio_client import Client

    from vicuna.serve import chat

    message = "Repeat these words.\ncat dog"
    engine = engines.load("gguf", tiny_options["gguf"])
    text, _ = chat.build_prompt([], message, engine.count_tokens, 2048, 16)
    expected = list(engine.stream(text, {"max_length": 16}))[-1]
    engine.close()
    for url in serve_chatbot(tiny_options["gguf"], tmp_path / "chatbot.log", mode="gguf"):
        client = Client(url, verbose=False)
        # message, temperature, top-k, top-p, max new tokens (the page's inputs; the rounds
        # are the session's state, not sent)
        result = client.predict(message, 0.0, 1, 0.0, 16, api_name="/respond")
        client.close()
    # outputs: message box, conversation, notice, the last prompt sent
    assert result[1][-1]["role"] == "assistant" and expected
    assert result[1][-1]["content"] == [{"type": "text", "text": expected}]
    assert result[-1] == text
