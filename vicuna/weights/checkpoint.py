"""Loading OpenNMT-py checkpoints and running their model, for merging, scoring and tests.

`load` checks what it reads once, for every tool: a file that is missing, empty, truncated or
not a torch checkpoint, a checkpoint that is not OpenNMT-py's, or a LoRA step checkpoint where a
full model is expected (and the reverse), is a ValueError / FileNotFoundError of one line that
names the file and says what to do.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from vicuna import onmt_fixes
from vicuna.files import EMPTY_CHECKPOINT, NOT_A_ZIP, require_file

KEYS = ("model", "vocab", "opt")


def load(path: str | Path, kind: str | None = None, *, mmap: bool = False) -> dict:
    """An OpenNMT-py checkpoint (a pickle: only load files the workflow made or the user named).
    kind: "full" (a model with its generator), "lora" (a LoRA step checkpoint) or None (either).
    mmap: map the tensors instead of reading them (a cheap check before another loader)."""
    onmt_fixes.apply()
    file = require_file(path, "checkpoint")
    if file.stat().st_size == 0:
        raise ValueError(f"{file}: {EMPTY_CHECKPOINT}")
    if not zipfile.is_zipfile(file):
        raise ValueError(f"{file}: {NOT_A_ZIP}")
    try:
        ck = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = " ".join(str(e).split())[:200]
        raise ValueError(f"{file}: unreadable torch checkpoint (corrupt or truncated?): "
                         f"{reason}") from None
    _check_kind(file, ck, kind)
    return ck


def is_lora(ck: dict) -> bool:
    return any(k.endswith((".lora_A", ".lora_B")) for k in ck["model"])


def _check_kind(file: Path, ck: object, kind: str | None) -> None:
    missing = [k for k in KEYS if not isinstance(ck, dict) or k not in ck]
    if not missing and not isinstance(ck["model"], dict):
        missing = ["model weights"]
    if missing:
        raise ValueError(f"{file}: not an OpenNMT-py checkpoint (no {', '.join(missing)}): give "
                         f"the output of convert_llama.py, lora_weights.py or training")
    if kind == "full" and is_lora(ck):
        raise ValueError(f"{file}: a LoRA step checkpoint (lora_A/lora_B weights only), not a "
                         f"full model: merge it into its base first with lora_weights.py")
    if kind == "full" and not isinstance(ck.get("generator"), dict):
        raise ValueError(f"{file}: a checkpoint without its output layer (generator): give a "
                         f"converted or merged model")
    if kind == "lora" and not is_lora(ck):
        raise ValueError(f"{file}: a full model, not a LoRA step checkpoint (no lora_A/lora_B "
                         f"weights): give a finetuning step checkpoint")


def build_model(checkpoint: dict, lora: dict | None = None, *, device: str = "cpu",
                dtype: torch.dtype = torch.float32, consume: bool = False) -> torch.nn.Module:
    """The OpenNMT-py model of a full checkpoint, on `device` in `dtype`; with `lora` (a LoRA step
    checkpoint), the base model with the unmerged LoRA layers of that checkpoint's options.

    The model is built on the meta device (no memory) and filled one tensor at a time, each
    converted and moved on its way in. With `consume`, each tensor also leaves the checkpoint
    as it goes in, so the job never holds the checkpoint and the model whole at once: its host
    memory peaks at the model's size on a CPU, and at the checkpoint's on a GPU."""
    from onmt.inputters.inputter import dict_to_vocabs
    from onmt.model_builder import build_base_model

    onmt_fixes.apply()
    opt = checkpoint["opt"]
    if lora is not None:
        opt = lora["opt"]
        opt.quant_layers, opt.quant_type = [], ""  # the reference: float32, no 8-bit
    with torch.device("meta"):
        model = build_base_model(opt, dict_to_vocabs(checkpoint["vocab"]))
    sources = [checkpoint["model"], *([lora["model"]] if lora else [])]
    generator = {f"generator.{k}": v for k, v in checkpoint["generator"].items()}
    wanted = {name for name, _ in model.named_parameters()}
    given = set(generator).union(*sources)
    if wanted != given:
        raise ValueError(f"checkpoint does not fit its model: missing {sorted(wanted - given)[:3]}, "
                         f"unexpected {sorted(given - wanted)[:3]}")
    for source in (*sources, generator):
        for name in list(source):
            tensor = source.pop(name) if consume else source[name]
            # A copy unless consumed: `to` returns the tensor itself when nothing changes, and
            # two models of one checkpoint must not share weights (LoRA layers merge into theirs
            # in eval mode). torch's own loader: OpenNMT-py's consumes the dict.
            tensor = tensor.to(device=device, dtype=dtype, copy=not consume)
            torch.nn.Module.load_state_dict(model, {name: tensor}, strict=False, assign=True)
            del tensor
    if consume:
        checkpoint["generator"] = None
    _rotary_tables(model, device)
    return model.eval()


def _rotary_tables(model: torch.nn.Module, device: str) -> None:
    """OpenNMT-py keeps each attention's rotary table as a plain attribute, not a buffer: built
    on the meta device, it is made again where the model lives."""
    from onmt.modules.multi_headed_attn import rotaryembeddings

    for module in model.modules():
        rope = getattr(module, "rope", None)
        if isinstance(rope, torch.Tensor) and rope.is_meta:
            module.rope, module.cos, module.sin = rotaryembeddings(
                module.rotary_dim, maxseqlen=rope.size(0), base=module.rotary_theta, device=device)


@torch.no_grad()
def hidden(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The decoder's output [batch, seq, dim] for token ids [batch, seq] (no padding)."""
    src = tokens.unsqueeze(-1)
    src_len = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)
    model.decoder.init_state()
    dec_out, _ = model.decoder(src, enc_out=None, src_len=src_len)
    return dec_out


@torch.no_grad()
def logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits [batch, seq, vocab] for token ids [batch, seq] (no padding)."""
    return model.generator(hidden(model, tokens)).float()


@torch.no_grad()
def next_log_probs(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """log P(next token) [batch, vocab] after token ids [batch, seq] (no padding): the
    vocabulary projection at the last position only."""
    return model.generator(hidden(model, tokens)[:, -1]).float().log_softmax(-1)
