"""Meta's LLaMA checkpoint -> OpenNMT-py checkpoint. The name mapping is spelled out once, as data."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import sentencepiece as spm
import torch
from tqdm import tqdm

from vicuna.llama import ModelArgs

PAD = "<blank>"  # OpenNMT-py's pad token; it takes id 3 (<0x00>, never produced by LLaMA's text)

# Meta name (inside layers.i.) -> OpenNMT-py name (inside decoder.transformer_layers.i.)
LAYER_NAMES = {
    "attention.wq": "self_attn.linear_query",
    "attention.wk": "self_attn.linear_keys",
    "attention.wv": "self_attn.linear_values",
    "attention.wo": "self_attn.final_linear",
    "attention_norm": "layer_norm_1",
    "feed_forward.w1": "feed_forward.w_1",
    "feed_forward.w2": "feed_forward.w_2",
    "feed_forward.w3": "feed_forward.w_3",
    "ffn_norm": "feed_forward.layer_norm",
}
TOP_NAMES = {
    "tok_embeddings": "decoder.embeddings.make_embedding.emb_luts.0",
    "norm": "decoder.layer_norm",
    "output": "generator",
}
# Model-parallel shards split these along dim 0 (output features) or 1 (input features);
# norms are repeated in every shard.
SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
             "wo": 1, "w2": 1, "tok_embeddings": 1}


def onmt_name(meta_name: str) -> str:
    """`layers.3.attention.wq.weight` -> `decoder.transformer_layers.3.self_attn.linear_query.weight`."""
    stem, _, param = meta_name.rpartition(".")
    if stem.startswith("layers."):
        _, index, inner = stem.split(".", 2)
        return f"decoder.transformer_layers.{index}.{LAYER_NAMES[inner]}.{param}"
    return f"{TOP_NAMES[stem]}.{param}"


def shard_dim(meta_name: str) -> int | None:
    stem = meta_name.rsplit(".", 1)[0]
    return SHARD_DIM.get(stem.rsplit(".", 1)[-1])


def architecture(args: ModelArgs) -> dict:
    """The OpenNMT-py options of a LLaMA. The finetune config restates them (override_opts)."""
    return {
        "model_task": "lm",
        "encoder_type": "transformer_lm",
        "decoder_type": "transformer_lm",
        "layer_norm": "rms",
        "norm_eps": args.norm_eps,
        "pos_ffn_activation_fn": "silu",
        "max_relative_positions": -1,  # rotary
        "rotary_interleave": True,  # Meta's layout rotates interleaved pairs
        "rotary_theta": int(args.rope_theta),
        "rotary_dim": 0,
        "position_encoding": False,
        "add_qkvbias": False,
        "add_ffnbias": False,
        "parallel_residual": False,
        "share_decoder_embeddings": False,
        "share_embeddings": False,
        "dec_layers": args.n_layers,
        "heads": args.n_heads,
        "num_kv": 0 if args.kv_heads == args.n_heads else args.kv_heads,
        "hidden_size": args.dim,
        "word_vec_size": args.dim,
        "transformer_ff": args.hidden_dim,
        "self_attn_type": "scaled-dot",
    }


def vocabulary(tokenizer_model: str | Path) -> list[str]:
    """The tokenizer's pieces, with id 3 as OpenNMT-py's pad token."""
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    pieces[3] = PAD
    return pieces


def checkpoint_options(arch: dict, vocab_size: int) -> Namespace:
    """OpenNMT-py's own training defaults, overridden by the architecture."""
    from onmt.opts import train_opts
    from onmt.utils.parse import ArgumentParser

    parser = ArgumentParser()
    train_opts(parser)
    opt, _ = parser.parse_known_args(["-data", "{}", "-src_vocab", "unused"])
    opt.data, opt.src_vocab = {}, None
    for key, value in arch.items():
        setattr(opt, key, value)
    opt.src_vocab_size = opt.tgt_vocab_size = vocab_size
    opt.share_vocab = True
    opt.decoder_start_token = "<s>"
    opt.model_dtype = "fp32"
    opt._all_transform = set()
    ArgumentParser.update_model_opts(opt)  # derives dec_hid_size, tgt_word_vec_size, ...
    return opt


def load_meta_params(model_dir: Path) -> dict:
    path = model_dir / "params.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (Meta's checkpoint directory holds params.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def meta_shards(model_dir: Path) -> list[Path]:
    shards = sorted(model_dir.glob("consolidated.*.pth"))
    if not shards:
        raise FileNotFoundError(f"{model_dir}: no consolidated.*.pth shard")
    for i, shard in enumerate(shards):
        if shard.name != f"consolidated.{i:02d}.pth":
            raise FileNotFoundError(f"{model_dir / f'consolidated.{i:02d}.pth'}: missing shard")
    return shards


def convert_meta(model_dir: str | Path, tokenizer_model: str | Path) -> dict:
    """Read Meta's params.json + consolidated.*.pth, one shard at a time, into an OpenNMT-py
    checkpoint dict. Shards are memory-mapped, so joining them holds one copy of each tensor."""
    model_dir = Path(model_dir)
    params = load_meta_params(model_dir)
    shards = meta_shards(model_dir)
    vocab = vocabulary(tokenizer_model)

    pieces: dict[str, list[torch.Tensor]] = {}
    for shard in tqdm(shards, desc="shards", unit="shard", disable=len(shards) == 1):
        state = torch.load(shard, map_location="cpu", mmap=True, weights_only=True)
        for name, tensor in state.items():
            if name.endswith("rope.freqs"):  # some Meta releases store rotary frequencies
                continue
            pieces.setdefault(name, []).append(tensor)

    model: dict[str, torch.Tensor] = {}
    for name, parts in pieces.items():
        if len(parts) != len(shards):
            raise ValueError(f"{model_dir}: tensor {name} is in {len(parts)} of {len(shards)} shards")
        dim = shard_dim(name)
        model[onmt_name(name)] = parts[0].clone() if dim is None else torch.cat(parts, dim=dim)

    emb = model["decoder.embeddings.make_embedding.emb_luts.0.weight"]
    args = ModelArgs.from_params(params, vocab_size=emb.shape[0])
    if emb.shape[0] != len(vocab):
        raise ValueError(
            f"{tokenizer_model}: the tokenizer has {len(vocab)} pieces but the model in "
            f"{model_dir} has {emb.shape[0]} embeddings"
        )
    check_shapes(model, args, model_dir)
    weight = model.pop("generator.weight")
    generator = {"weight": weight, "bias": torch.zeros(weight.shape[0], dtype=weight.dtype)}
    arch = architecture(args)
    return {
        "model": model,
        "generator": generator,
        "vocab": {"src": vocab, "tgt": vocab, "data_task": "lm", "decoder_start_token": "<s>"},
        "opt": checkpoint_options(arch, len(vocab)),
        "optim": None,
    }


def check_shapes(model: dict[str, torch.Tensor], args: ModelArgs, where: Path) -> None:
    """Every tensor must have the shape params.json implies: a wrong config trains for days
    before anyone notices otherwise."""
    d, hd, kv = args.dim, args.head_dim, args.kv_heads
    expected = {
        "decoder.embeddings.make_embedding.emb_luts.0.weight": (args.vocab_size, d),
        "decoder.layer_norm.weight": (d,),
        "generator.weight": (args.vocab_size, d),
    }
    per_layer = {
        "self_attn.linear_query.weight": (args.n_heads * hd, d),
        "self_attn.linear_keys.weight": (kv * hd, d),
        "self_attn.linear_values.weight": (kv * hd, d),
        "self_attn.final_linear.weight": (d, args.n_heads * hd),
        "layer_norm_1.weight": (d,),
        "feed_forward.w_1.weight": (args.hidden_dim, d),
        "feed_forward.w_2.weight": (d, args.hidden_dim),
        "feed_forward.w_3.weight": (args.hidden_dim, d),
        "feed_forward.layer_norm.weight": (d,),
    }
    for i in range(args.n_layers):
        expected.update({f"decoder.transformer_layers.{i}.{k}": v for k, v in per_layer.items()})
    for name, shape in expected.items():
        if name not in model:
            raise ValueError(f"{where}: tensor for {name} is missing")
        if tuple(model[name].shape) != shape:
            raise ValueError(
                f"{where}: {name} has shape {tuple(model[name].shape)}, params.json implies {shape}"
            )
    extra = set(model) - set(expected)
    if extra:
        raise ValueError(f"{where}: unexpected tensors {sorted(extra)[:5]}")
