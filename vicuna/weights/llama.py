"""A small LLaMA in Meta's layout: the reference the converter and the tests check against.

Names follow Meta's checkpoints (tok_embeddings, layers.i.attention.wq, feed_forward.w1, ...),
and the rotary embedding rotates interleaved pairs (x[2i], x[2i+1]) as Meta's code does.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vicuna.weights.shape import (
    ModelArgs,  # params.json (vicuna/weights/shape.py); llama.ModelArgs for callers
)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotary_angles(head_dim: int, length: int, theta: float) -> torch.Tensor:
    """cos + i sin of position * frequency, shape [length, head_dim // 2]."""
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim)
    angles = torch.outer(torch.arange(length).float(), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [batch, seq, heads, head_dim]."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    rotated = torch.view_as_real(pairs * angles[None, :, None, :]).flatten(3)
    return rotated.type_as(x)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = args.n_heads, args.kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv * self.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * self.head_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim)
        k = self.wk(x).view(b, t, self.n_kv, self.head_dim)
        v = self.wv(x).view(b, t, self.n_kv, self.head_dim)
        q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        repeat = self.n_heads // self.n_kv  # grouped-query attention shares k, v between heads
        k, v = k.repeat_interleave(repeat, dim=2), v.repeat_interleave(repeat, dim=2)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        causal = torch.full((t, t), float("-inf"), device=x.device).triu(1)
        out = torch.softmax(scores.float() + causal, dim=-1).type_as(q) @ v
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.hidden_dim, bias=False)
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, args.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # SwiGLU


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), angles)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        assert args.vocab_size > 0, "vocab_size must be known to build the model"
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, seq, vocab] for token ids [batch, seq]."""
        angles = rotary_angles(self.args.head_dim, tokens.shape[1], self.args.rope_theta)
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, angles.to(h.device))
        return self.output(self.norm(h)).float()


def save_meta(model: Transformer, model_dir: str | Path) -> None:
    """Meta's layout: params.json + consolidated.00.pth (vocab_size -1, as LLaMA 1 ships it)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in asdict(model.args).items() if v is not None}
    params["vocab_size"] = -1
    (model_dir / "params.json").write_text(json.dumps(params, indent=1) + "\n")
    torch.save(model.state_dict(), model_dir / "consolidated.00.pth")


def load_meta(model_dir: str | Path) -> Transformer:
    """A single-shard Meta checkpoint as the reference model (vocab size from the weights)."""
    model_dir = Path(model_dir)
    params = json.loads((model_dir / "params.json").read_text())
    state = torch.load(model_dir / "consolidated.00.pth", map_location="cpu", weights_only=True)
    args = ModelArgs.from_params(params, vocab_size=state["tok_embeddings.weight"].shape[0],
                                 where=model_dir / "params.json")
    model = Transformer(args)
    model.load_state_dict(state)
    return model.float().eval()
