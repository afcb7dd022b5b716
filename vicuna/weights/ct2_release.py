"""The CTranslate2 release of an OpenNMT-py checkpoint, as the model it is.

CTranslate2 4.8.5's OpenNMT-py converter reads a fixed set of the checkpoint's options; the rest
it drops without a word. One of them changes every logit of a LLaMA-family model: the rotary
base (`rotary_theta`: 10,000 in LLaMA, 1,000,000 in Code Llama), which the converter never
passes, so such a release runs 10,000. Another is read but counted otherwise: OpenNMT-py's
`sliding_window` is the positions a token sees before itself (vicuna.weights.shape.onmt_window),
CTranslate2's the keys its cache keeps, the token's own included: Mistral's window, one more.
The release here carries both into the spec as the model has them, and refuses, naming it, any
other option of the checkpoint that would be dropped at a value that changes the model.

CTranslate2 4.8.5 keeps a window while it generates (measured: logits past the window are
transformers' to 1e-6) once the prompt is in its cache, but not for the prompt itself: a prompt
longer than the window gets other logits, and score_batch fails past it. The ct2 engine refuses
those (vicuna.serve.engines.ct2); `sliding_window` reads a release's window back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vicuna.weights.shape import model_window

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


def window(opt: argparse.Namespace) -> int | None:
    """The model's sliding window (Mistral's count), None for none."""
    return model_window(getattr(opt, "sliding_window", 0))


WINDOW_VARIABLE = "decoder/sliding_window"  # CTranslate2's name in model.bin


def sliding_window(model_dir: str | Path) -> int | None:
    """The sliding window a CTranslate2 release runs (its model.bin's decoder/sliding_window;
    None for none, or for a release of a layout CTranslate2 4 does not write)."""
    from vicuna.weights.ct2_model_bin import scalar

    value = scalar(Path(model_dir) / "model.bin", WINDOW_VARIABLE)
    return int(value) if value else None


def convert(model: str, output: str, quantization: str, opt: argparse.Namespace) -> None:
    """`model` (a merged OpenNMT-py checkpoint with options `opt`) released to `output`."""
    from ctranslate2.converters import OpenNMTPyConverter

    check_options(opt, model)
    base = np.dtype("float32").type(rotary_base(opt))
    cache = np.dtype("int32").type(window(opt) or 0)

    class Converter(OpenNMTPyConverter):
        def _load(self):
            spec = super()._load()
            spec.decoder.sliding_window = cache
            for layer in spec.decoder.layer:
                if hasattr(layer.self_attention, "rotary_base"):
                    layer.self_attention.rotary_base = base
                layer.self_attention.sliding_window = cache
            return spec

    Converter(model).convert(output, quantization=quantization)
