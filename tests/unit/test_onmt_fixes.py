"""Each trap of OpenNMT-py 3.5.1 under today's torch (../shared/KNOWN_TRAPS.md) that the
workflow meets is handled once, in vicuna.onmt_fixes / vicuna.train.training; these tests fail
if one comes back. The cached-rotary fix is checked end to end in test_workflow.py
(py and ct2 predictions agree, and disagree without the fix)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from helpers import run_script

from vicuna import onmt_fixes
from vicuna.train import finetune_config, training


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True)


def test_torch_load_of_a_checkpoint_needs_the_namespace_allow_listed(tiny_meta):
    load = f"import torch; torch.load({str(tiny_meta['onmt'])!r}, map_location='cpu')"
    bare = python(load)
    assert bare.returncode != 0 and "argparse.Namespace" in bare.stderr  # the trap is real
    fixed = python("from vicuna import onmt_fixes; onmt_fixes.allow_checkpoint_pickles()\n" + load)
    assert fixed.returncode == 0, fixed.stderr


def test_ctranslate2_release_loads_safely(tiny_meta, tmp_path):
    out = tmp_path / "ct2"
    run_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(out),
               "--quantization", "float32")
    assert (out / "model.bin").is_file() and not list(tmp_path.glob(".ct2.tmp*"))
    convert = f"""
        from ctranslate2.converters import OpenNMTPyConverter
        OpenNMTPyConverter({str(tiny_meta['onmt'])!r}).convert({str(tmp_path / 'bare')!r})
    """
    assert python(convert).returncode != 0  # CTranslate2's own weights_only load: the trap


def test_generator_is_frozen_when_lora_is_on(tiny_meta):
    import onmt.model_builder
    from onmt.inputters.inputter import dict_to_vocabs

    from vicuna.weights import checkpoint

    onmt_fixes.apply()
    ck = checkpoint.load(tiny_meta["onmt"])
    opt = ck["opt"]
    opt.lora_layers, opt.lora_rank, opt.lora_alpha, opt.lora_dropout = ["linear_query"], 2, 4, 0.0
    vocabs = dict_to_vocabs(ck["vocab"])
    unfixed = onmt.model_builder.build_base_model.__wrapped__(opt, vocabs)
    assert all(p.requires_grad for p in unfixed.generator.parameters())  # the trap is real
    model = onmt.model_builder.build_base_model(opt, vocabs)
    assert not any(p.requires_grad for p in model.generator.parameters())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_quant_layers_without_quant_type_is_refused():
    train = {"quantization": {"layers": ["w_1"], "type": ""}, "lora": {}}
    with pytest.raises(ValueError, match="quantization.type"):
        finetune_config.finetune_config(
            shape=None, vocab_size=0, corpora={}, valid=None, tokenizer_model="",
            vocab="", base_checkpoint="", save_model="", tensorboard_dir="", train=train)


def test_fusedadam_without_apex_falls_back_to_adam():
    assert training.optim_args({"optim": "fusedadam"}, apex_available=False) == ["-optim", "adam"]
    assert training.optim_args({"optim": "fusedadam"}, apex_available=True) == []
    assert training.optim_args({"optim": "adam"}) == []


def test_gpu_ranks_follow_the_devices():
    assert training.gpu_args(0) == ["-world_size", "1"]
    assert training.gpu_args(2) == ["-world_size", "2", "-gpu_ranks", "0", "1"]


def test_another_opennmt_py_version_is_refused_in_one_line():
    onmt_fixes.check_onmt_version()  # the installed one is the one the fixes were written for
    with pytest.raises(ValueError) as error:
        onmt_fixes.check_onmt_version("3.6.0")
    message = str(error.value)
    assert "\n" not in message and "3.6.0" in message and "opennmt-py==3.5.1" in message
