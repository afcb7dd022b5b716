"""Loading OpenNMT-py checkpoints and running their model, for merging, scoring and tests."""

from __future__ import annotations

from pathlib import Path

import torch

from vicuna import onmt_fixes


def load(path: str | Path) -> dict:
    """An OpenNMT-py checkpoint (a pickle: only load files the workflow made or the user named)."""
    onmt_fixes.apply()
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_model(checkpoint: dict, lora: dict | None = None) -> torch.nn.Module:
    """The float32 OpenNMT-py model of a full checkpoint; with `lora` (a LoRA step checkpoint),
    the base model with the unmerged LoRA layers of that checkpoint's options attached."""
    from onmt.inputters.inputter import dict_to_vocabs
    from onmt.model_builder import build_base_model

    onmt_fixes.apply()
    opt = checkpoint["opt"]
    if lora is not None:
        opt = lora["opt"]
        opt.quant_layers, opt.quant_type = [], ""  # the reference: float32, no 8-bit
    model = build_base_model(opt, dict_to_vocabs(checkpoint["vocab"]))
    state = {**checkpoint["model"], **(lora["model"] if lora else {})}
    # torch's own loader: OpenNMT-py overrides load_state_dict with one that consumes the dict
    missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
    torch.nn.Module.load_state_dict(model.generator, checkpoint["generator"])
    missing = [m for m in missing if not m.startswith("generator.")]
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit its model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return model.float().eval()


@torch.no_grad()
def logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits [batch, seq, vocab] for token ids [batch, seq] (no padding)."""
    src = tokens.unsqueeze(-1)
    src_len = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)
    model.decoder.init_state()
    dec_out, _ = model.decoder(src, enc_out=None, src_len=src_len)
    return model.generator(dec_out).float()
