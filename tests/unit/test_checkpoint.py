"""Checkpoints read by vicuna.weights.checkpoint: each wrong kind of file named with its fault in one
line; a LoRA step checkpoint that does not fit its base refused before merging."""

from __future__ import annotations

import pytest
from helpers import CHECKPOINT_FAULTS, make_lora

from vicuna.weights import checkpoint


@pytest.mark.parametrize("bad", CHECKPOINT_FAULTS)
def test_checkpoint_load_names_the_file_and_the_fault(bad_files, bad):
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        checkpoint.load(bad_files[bad], kind="full")
    message = str(e.value)
    assert message.startswith(str(bad_files[bad])) and CHECKPOINT_FAULTS[bad] in message
    assert "\n" not in message


def test_full_checkpoint_where_lora_expected(tiny_meta):
    with pytest.raises(ValueError, match="not a LoRA step checkpoint"):
        checkpoint.load(tiny_meta["onmt"], kind="lora")


def test_lora_of_another_architecture_names_the_option(base):
    lora = make_lora(base)
    lora["opt"].heads = base["opt"].heads * 2
    with pytest.raises(ValueError, match="option heads is"):
        from vicuna.weights import lora as lora_module

        lora_module.merge(base, lora)
