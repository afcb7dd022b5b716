"""The CTranslate2 release of an OpenNMT-py checkpoint, as the model it is.

CTranslate2 4.8.5's OpenNMT-py converter reads a fixed set of the checkpoint's options; the rest
it drops without a word. One of them changes every logit of a LLaMA-family model: the rotary
base (`rotary_theta`: 10,000 in LLaMA, 1,000,000 in Code Llama), which the converter never
passes, so such a release runs 10,000. The release here carries it into the spec, and refuses,
naming it, any other option of the checkpoint that would be dropped at a value that changes the
model.
"""

from __future__ import annotations

import argparse

import numpy as np

# Options of the checkpoint that the converter does not read, and the value at which dropping
# them changes nothing (OpenNMT-py's defaults).
DROPPED = {
    "rotary_dim": 0,  # 0: rotate every dimension of a head, as CTranslate2 does
    "num_experts": 0,  # mixture of experts
    "parallel_residual": False,
    "shared_layer_norm": False,
}
ROTARY_BASE = 10000  # CTranslate2's, where the spec is given none


def check_options(opt: argparse.Namespace, where: str) -> None:
    """A ValueError naming each option the converter would drop at a value that matters."""
    lost = [f"{name} {getattr(opt, name)!r}" for name, neutral in DROPPED.items()
            if getattr(opt, name, neutral) not in (neutral, None)]
    if lost:
        raise ValueError(f"{where}: {', '.join(lost)}: CTranslate2's OpenNMT-py converter "
                         f"drops {'this option' if len(lost) == 1 else 'these options'}, and "
                         f"the release would be another model")


def rotary_base(opt: argparse.Namespace) -> float:
    return float(getattr(opt, "rotary_theta", None) or ROTARY_BASE)


def convert(model: str, output: str, quantization: str, opt: argparse.Namespace) -> None:
    """`model` (a merged OpenNMT-py checkpoint with options `opt`) released to `output`."""
    from ctranslate2.converters import OpenNMTPyConverter

    check_options(opt, model)
    base = np.dtype("float32").type(rotary_base(opt))

    class Converter(OpenNMTPyConverter):
        def _load(self):
            spec = super()._load()
            for layer in spec.decoder.layer:
                if hasattr(layer.self_attention, "rotary_base"):
                    layer.self_attention.rotary_base = base
            return spec

    Converter(model).convert(output, quantization=quantization)
