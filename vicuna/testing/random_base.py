"""LLaMA checkpoints in Meta's layout with a real model's shape but fewer layers and random
weights, and placeholders of a real model's size: to rehearse the 7B workflow on a CPU (tests),
measure each job's memory on 7B-shaped checkpoints (benchmarks/job_memory.py), and plan a dry
run on files of the real size without the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vicuna.weights.convert import SHARD_DIM
from vicuna.weights.shape import ModelArgs, meta_shapes

# Meta's params.json of LLaMA 1, as it ships with the weights (vocab_size -1: the tokenizer decides)
PARAMS = {
    "7B": {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-06,
           "vocab_size": -1},
    "13B": {"dim": 5120, "multiple_of": 256, "n_heads": 40, "n_layers": 40, "norm_eps": 1e-06,
            "vocab_size": -1},
}
SHARDS = {"7B": 1, "13B": 2}  # consolidated.NN.pth files Meta ships
LLAMA_VOCAB = 32000


def _args(model: str, n_layers: int | None, vocab_size: int) -> tuple[dict, ModelArgs]:
    params = dict(PARAMS[model])
    if n_layers is not None:
        params["n_layers"] = n_layers
    return params, ModelArgs.from_params(params, vocab_size=vocab_size)


def write_random(model_dir: str | Path, model: str = "7B", n_layers: int | None = 1,
                 vocab_size: int = LLAMA_VOCAB, seed: int = 0, std: float = 0.02) -> int:
    """A float16 checkpoint of `model`'s shape with `n_layers` layers and random weights
    (norms at 1, as trained models have them), in one shard; returns its size in bytes."""
    params, args = _args(model, n_layers, vocab_size)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in meta_shapes(args).items():
        if name.endswith("norm.weight"):
            state[name] = torch.ones(shape, dtype=torch.float16)
        else:
            state[name] = (torch.randn(shape, generator=gen) * std).to(torch.float16)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "params.json").write_text(json.dumps(params) + "\n")
    torch.save(state, model_dir / "consolidated.00.pth")
    return (model_dir / "consolidated.00.pth").stat().st_size


def write_placeholder(model_dir: str | Path, model: str = "7B",
                      vocab_size: int = LLAMA_VOCAB) -> list[Path]:
    """Meta's params.json and sparse consolidated.NN.pth files of the real float16 size (no
    weights: they read as zeros): what a dry run sees of a downloaded model, for free."""
    params, args = _args(model, None, vocab_size)
    shapes = meta_shapes(args)
    shards = SHARDS[model]
    per_shard = 0
    for name, shape in shapes.items():
        numel = torch.Size(shape).numel()
        split = SHARD_DIM.get(name.rsplit(".", 2)[-2]) is not None
        per_shard += 2 * (numel // shards if split else numel)  # norms repeat in each shard
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "params.json").write_text(json.dumps(params) + "\n")
    paths = [model_dir / f"consolidated.{i:02d}.pth" for i in range(shards)]
    for path in paths:
        with open(path, "wb") as f:
            f.truncate(per_shard)
    return paths

