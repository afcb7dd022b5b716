"""LLaMA checkpoints in Meta's layout with a real model's shape but fewer layers and random
weights, and placeholders of a real model's size: to rehearse the 7B workflow on a CPU (tests),
measure each job's memory on 7B-shaped checkpoints (benchmarks/job_memory.py), and plan a dry
run on files of the real size without the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vicuna.weights import name_maps
from vicuna.weights.convert import SHARD_DIM
from vicuna.weights.shape import LlamaShape, ModelArgs, meta_shapes

# Meta's params.json of LLaMA 1, as it ships with the weights (vocab_size -1: the tokenizer decides)
PARAMS = {
    "7B": {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-06,
           "vocab_size": -1},
    "13B": {"dim": 5120, "multiple_of": 256, "n_heads": 40, "n_layers": 40, "norm_eps": 1e-06,
            "vocab_size": -1},
}
# Llama 2's, as Meta ships them (norm_eps 1e-05; 70B: 8 KV heads, ffn_dim_multiplier)
PARAMS["llama2-7B"] = {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32,
                       "norm_eps": 1e-05, "vocab_size": -1}
PARAMS["llama2-70B"] = {"dim": 8192, "multiple_of": 4096, "ffn_dim_multiplier": 1.3,
                        "n_heads": 64, "n_kv_heads": 8, "n_layers": 80, "norm_eps": 1e-05,
                        "vocab_size": -1}
SHARDS = {"7B": 1, "13B": 2, "llama2-7B": 1, "llama2-70B": 8}  # consolidated.NN.pth files
LLAMA_VOCAB = 32000
# Hugging Face's config.json of the bases published in that layout only
HF_CONFIGS = {
    "tinyllama-1.1B": {  # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
        "intermediate_size": 5632, "num_attention_heads": 32, "num_hidden_layers": 22,
        "num_key_value_heads": 4, "max_position_embeddings": 2048, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "vocab_size": 32000, "hidden_act": "silu",
        "tie_word_embeddings": False, "torch_dtype": "float32"},
    "mistral-7B": {  # mistralai/Mistral-7B-v0.1
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
        "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "sliding_window": 4096, "vocab_size": 32000,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
}


def _args(model: str, n_layers: int | None, vocab_size: int) -> tuple[dict, ModelArgs]:
    params = dict(PARAMS[model])
    if n_layers is not None:
        params["n_layers"] = n_layers
    return params, ModelArgs.from_params(params, vocab_size=vocab_size)


def random_state(shape: ModelArgs | LlamaShape, seed: int, std: float) -> dict[str, torch.Tensor]:
    """Random float16 weights of this shape under Meta's names, norms at 1 (as trained models
    have them)."""
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.ones(dims, dtype=torch.float16) if name.endswith("norm.weight")
            else (torch.randn(dims, generator=gen) * std).to(torch.float16)
            for name, dims in meta_shapes(shape).items()}


def write_random(model_dir: str | Path, model: str = "7B", n_layers: int | None = 1,
                 vocab_size: int = LLAMA_VOCAB, seed: int = 0, std: float = 0.02) -> int:
    """A float16 checkpoint of `model`'s shape with `n_layers` layers and random weights
    (norms at 1, as trained models have them), in one shard; returns its size in bytes."""
    params, args = _args(model, n_layers, vocab_size)
    state = random_state(args, seed, std)
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



def hf_shape(model: str, n_layers: int | None = None) -> tuple[dict, LlamaShape]:
    config = dict(HF_CONFIGS[model])
    if n_layers is not None:
        config["num_hidden_layers"] = n_layers
    return config, LlamaShape.from_config(config, f"{model} config.json")


def write_placeholder_hf(model_dir: str | Path, model: str) -> list[Path]:
    """Hugging Face's config.json and a sparse model.safetensors of the real 16-bit size (no
    weights): what a dry run sees of a model downloaded from the Hub."""
    config, shape = hf_shape(model)
    size = sum(2 * torch.Size(s).numel() for s in meta_shapes(shape).values())
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    path = model_dir / "model.safetensors"
    with open(path, "wb") as f:
        f.truncate(size)
    return [path]


def write_random_hf(model_dir: str | Path, model: str, n_layers: int | None = 1,
                    seed: int = 0, std: float = 0.02) -> int:
    """A float16 model.safetensors of `model`'s Hugging Face shape with `n_layers` layers and
    random weights, with its config.json; returns its size in bytes."""
    from safetensors.torch import save_file

    config, shape = hf_shape(model, n_layers)
    config["torch_dtype"] = "float16"
    state = {name_maps.rename(name, name_maps.META_TO_HF): tensor
             for name, tensor in random_state(shape, seed, std).items()}
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, model_dir / "model.safetensors", metadata={"format": "pt"})
    return (model_dir / "model.safetensors").stat().st_size
