"""Decoding options named once (vicuna.serve.decoding): each mode's options file reads only its
keys, and each option means the same in every engine (OpenNMT-py read as the oracle; the gguf
engine's own sampling: tests/unit/test_gguf_engine.py)."""

from __future__ import annotations

import inspect

import pytest
import torch
import yaml
from helpers import REPO, run_script

from vicuna.serve import decoding, engines
from vicuna.serve.engines.base import prompt_pieces

INFERENCE = {"device": "cpu", "precision": "fp32", "compute_type": "default", "cpu_threads": 1,
             "batch_size": 4, "beam_size": 1, "max_length": 8, "random_sampling_topk": 1,
             "random_sampling_topp": 0.0, "random_sampling_temp": 1.0, "seed": 3}


def schema_keys() -> set[str]:
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    return set(schema["properties"]["inference"]["properties"])


def test_every_inference_key_is_read_by_a_mode_or_the_rules():
    read = set().union(*(set(engines.config_keys(mode)) for mode in engines.REGISTRY))
    # the rules' own: the prompts, the references, and which GGUF the gguf mode reads
    assert read | {"input_examples", "references", "gguf_type"} == schema_keys()


@pytest.mark.parametrize("mode", sorted(engines.REGISTRY))
def test_each_mode_is_written_from_its_keys_alone(mode):
    own = {key: INFERENCE[key] for key in engines.config_keys(mode)}
    opts = engines.options_file(mode, "m", "tok.model", own)
    assert {opts[key] for key in decoding.KEYS} == {own[key] for key in decoding.KEYS}
    for key in own:  # no key is read that the rule does not give
        with pytest.raises(KeyError):
            engines.options_file(mode, "m", "tok.model", {k: v for k, v in own.items() if k != key})


def test_mode_only_keys_reach_their_mode_only():
    py = engines.options_file("py", "m", "t", INFERENCE)
    ct2 = engines.options_file("ct2", "m", "t", INFERENCE)
    gguf = engines.options_file("gguf", "m", "t", INFERENCE)
    assert "precision" in py and "precision" not in ct2
    assert {"compute_type", "cpu_threads"} <= set(ct2) and not {"compute_type", "cpu_threads"} & set(py)
    # llama.cpp runs on the CPU: threads, no device, no precision, no compute type
    assert "cpu_threads" in gguf and not {"device", "precision", "compute_type"} & set(gguf)
    with pytest.raises(ValueError, match="inference mode 'tf'"):
        engines.options_file("tf", "m", "t", INFERENCE)


@pytest.mark.parametrize(("options", "expected"), [
    ({"random_sampling_topk": 1}, {"sampling_topk": 1}),  # greedy
    ({"random_sampling_topk": 0}, {"sampling_topk": 0}),  # no limit: every token, as py
    ({"random_sampling_topk": 5}, {"sampling_topk": 5}),
    ({"random_sampling_topk": 5, "random_sampling_temp": 0}, {"sampling_topk": 1,
                                                              "sampling_temperature": 1.0}),
    ({"random_sampling_topp": 0.0}, {"sampling_topp": 1.0}),  # off in both
    ({"random_sampling_topp": 0.9}, {"sampling_topp": 0.9}),
    ({}, {"sampling_topk": 0, "beam_size": 5, "max_batch_size": 30, "sampling_topp": 1.0}),
])
def test_ct2_arguments_mean_what_the_options_mean_in_opennmt(options, expected):
    args = decoding.ct2_args({"max_length": 8, **options})
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize(("options", "expected"), [
    ({"random_sampling_topk": 1}, {"greedy": True}),
    ({"random_sampling_topk": 0}, {"greedy": False, "top_k": 0}),  # every token
    ({"random_sampling_topk": 5, "random_sampling_temp": 0}, {"greedy": True}),
    ({"random_sampling_topk": 5, "random_sampling_temp": 0.7}, {"greedy": False, "top_k": 5,
                                                                "temperature": 0.7}),
    ({"random_sampling_topp": 0.0}, {"top_p": 0.0}),  # off
    ({}, {"greedy": False, "top_k": 0, "beam_size": 5}),  # OpenNMT-py's defaults
])
def test_gguf_arguments_mean_what_the_options_mean_in_opennmt(options, expected):
    args = decoding.gguf_args({"max_length": 8, **options})
    assert {key: args[key] for key in expected} == expected


def test_onmt_defaults_are_the_installed_opennmt_py_defaults():
    from onmt.opts import translate_opts
    from onmt.utils.parse import ArgumentParser

    parser = ArgumentParser()
    translate_opts(parser)
    opt = parser.parse_args(["-model", "m", "-src", "-"])
    assert {key: getattr(opt, key) for key in decoding.ONMT_DEFAULTS} == decoding.ONMT_DEFAULTS


def test_translator_attributes_exist_in_opennmt_py():
    from onmt.translate.translator import Inference

    init = inspect.getsource(Inference.__init__)
    for attr in decoding.TRANSLATOR_ATTRS.values():
        assert f"self.{attr} = " in init, attr


def distinct_draws(keep_topk: int, temp: float = 1.0) -> int:
    from onmt.translate.greedy_search import sample_with_temperature

    torch.manual_seed(0)
    logits = torch.linspace(0, 1, 50).repeat(200, 1)  # nearly as likely, no ties
    ids, _ = sample_with_temperature(logits, temp, keep_topk, 0.0)
    return len(set(ids.flatten().tolist()))


def test_opennmt_py_topk_0_samples_every_token_and_temperature_0_is_greedy():
    assert distinct_draws(0) > 10 and distinct_draws(3) <= 3
    assert distinct_draws(1) == distinct_draws(0, temp=0.0) == 1


def test_the_py_engine_samples_every_token_at_topk_0(tiny_options):
    """OpenNMT-py's translator runs beam search, not sampling, for top-k 0 and top-p 0: the py
    engine samples for them (every token), greedy at temperature 0, and a seed repeats."""
    from vicuna.serve import engines

    engine = engines.load("py", tiny_options["py"])
    text = "Write a word."

    def answers(**settings) -> set[str]:
        settings = {"max_length": 12, "random_sampling_topk": 0, "random_sampling_temp": 1.0,
                    **settings}
        return {engine.generate([text], settings)[0].text for _ in range(4)}

    assert len(answers()) > 1
    assert answers(random_sampling_temp=0) == answers(random_sampling_topk=1)
    assert len(answers(random_sampling_temp=0)) == len(answers(seed=3)) == 1
    engine.close()


def test_ct2_topk_0_samples_and_temperature_0_is_greedy(tiny_meta, tmp_path):
    import ctranslate2

    from vicuna import tokenizer

    run_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output",
               str(tmp_path / "ct2"), "--quantization", "float32")
    generator = ctranslate2.Generator(str(tmp_path / "ct2"), device="cpu", intra_threads=1)
    tokens = prompt_pieces(tokenizer.load(tiny_meta["tokenizer"]), "Write a word.")

    def answers(**options) -> set[tuple[str, ...]]:
        seen = set()
        for seed in range(6):
            ctranslate2.set_random_seed(seed)
            args = decoding.ct2_args({"max_length": 12, "random_sampling_temp": 1.5, **options})
            [result] = generator.generate_batch([tokens], **args)
            seen.add(tuple(result.sequences[0]))
        return seen

    assert len(answers(random_sampling_topk=0)) > 1
    assert answers(random_sampling_topk=1) == answers(random_sampling_topk=0,
                                                      random_sampling_temp=0)
    assert len(answers(random_sampling_topk=1)) == 1


def test_chosen_settings_keep_what_the_user_leaves_alone():
    defaults = decoding.defaults({**INFERENCE, "model": "m"})
    assert set(defaults) == set(decoding.SAMPLING)
    assert decoding.chosen(defaults) == defaults
    chosen = decoding.chosen(defaults, max_length=3, top_k=0, temperature=0.5)
    assert chosen == {**defaults, "max_length": 3, "random_sampling_topk": 0,
                      "random_sampling_temp": 0.5}
    assert set(chosen) <= set(decoding.TRANSLATOR_ATTRS)  # a py engine can set each per call


def test_engine_threads_never_exceed_the_cpus_this_process_may_use(monkeypatch):
    """CTranslate2's own 0 means 4 threads on any machine: oversubscribed on 2 cores (ct2 and
    gguf read cpu_threads alike)."""
    import os

    from vicuna.serve.engines.base import cpu_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert (cpu_threads(0), cpu_threads(1), cpu_threads(2), cpu_threads(8)) == (2, 1, 2, 2)


def test_a_requests_temperature_samples_even_where_the_options_are_greedy():
    """OpenAI's meaning (vicuna.serve.decoding.requested): temperature 0 is greedy, above 0 samples;
    the options file's greedy top-k 1 does not silently make it greedy, its sampling top-k
    stays, and the request's own top_k wins."""
    greedy = decoding.defaults({**INFERENCE, "model": "m"})  # top-k 1
    assert decoding.requested(greedy) == greedy  # no temperature: the options file's way
    assert decoding.requested(greedy, temperature=0.8)["random_sampling_topk"] == 0
    assert decoding.requested(greedy, temperature=0)["random_sampling_topk"] == 1
    assert decoding.requested(greedy, temperature=0.8, top_k=1)["random_sampling_topk"] == 1
    assert decoding.requested(greedy, temperature=0.8, top_k=5)["random_sampling_topk"] == 5
    top40 = {**greedy, "random_sampling_topk": 40}
    assert decoding.requested(top40, temperature=0.8)["random_sampling_topk"] == 40
    assert decoding.ct2_args(decoding.requested(greedy, temperature=0))["sampling_topk"] == 1
