"""A LLaMA checkpoint -> OpenNMT-py checkpoint. The name mappings are spelled out once, as data.

Two layouts are read, told apart by their config file:
- Meta's: params.json + consolidated.NN.pth (1 to 8 model-parallel shards, joined here);
- Hugging Face's: config.json + model.safetensors / pytorch_model.bin, or their shards listed in
  an *.index.json. Hugging Face permutes the rows of q and k for its half-split rotary layout;
  they are permuted back to Meta's interleaved layout, so OpenNMT-py keeps rotary_interleave.

Memory: each tensor is read from its file(s) straight into its place in the output, with plain
reads (a strided destination goes through one reused 16 MiB buffer), so the converter holds one
copy of the output and nothing more, however many shards there are. Not torch.load(mmap=True)
or safetensors' safe_open: pages of a mapped file that have been read count in the resident
memory for as long as the file stays mapped, and joining shards from mapped files measured
2.1x the output's size (the readers are in vicuna/lazy_tensors.py). Nothing is read before every
shape has been checked against the config.
"""

from __future__ import annotations

import json
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import sentencepiece as spm
import torch
from tqdm import tqdm

from vicuna.lazy_tensors import BOUNCE_BYTES, Source, index_file
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
# norms are repeated in every shard. (LLaMA 1 and 2 split tok_embeddings along dim 1, Llama 3's
# VocabParallelEmbedding along dim 0: the shapes tell which, see _meta_join_dim.)
SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
             "wo": 1, "w2": 1, "tok_embeddings": 1}
# Stored by some Meta releases, derived by every implementation: skipped.
META_SKIP = ("rope.freqs",)

# Hugging Face name (inside model.layers.i.) -> Meta name (inside layers.i.)
HF_LAYER_NAMES = {
    "self_attn.q_proj": "attention.wq",
    "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1",
    "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3",
    "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}
HF_TOP_NAMES = {"model.embed_tokens": "tok_embeddings", "model.norm": "norm", "lm_head": "output"}
HF_SKIP = ("rotary_emb.inv_freq",)  # buffers in checkpoints of older transformers
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # each alone, or sharded with .index.json


def onmt_name(meta_name: str) -> str:
    """`layers.3.attention.wq.weight` -> `decoder.transformer_layers.3.self_attn.linear_query.weight`."""
    stem, _, param = meta_name.rpartition(".")
    if stem.startswith("layers."):
        _, index, inner = stem.split(".", 2)
        return f"decoder.transformer_layers.{index}.{LAYER_NAMES[inner]}.{param}"
    return f"{TOP_NAMES[stem]}.{param}"


def meta_name_of_hf(hf_name: str) -> str | None:
    """`model.layers.3.self_attn.q_proj.weight` -> `layers.3.attention.wq.weight`; None for a
    tensor to skip; KeyError for one this converter does not know."""
    if hf_name.endswith(HF_SKIP):
        return None
    stem, _, param = hf_name.rpartition(".")
    if stem.startswith("model.layers."):
        _, _, index, inner = stem.split(".", 3)
        return f"layers.{index}.{HF_LAYER_NAMES[inner]}.{param}"
    return f"{HF_TOP_NAMES[stem]}.{param}"


def shard_dim(meta_name: str) -> int | None:
    stem = meta_name.rsplit(".", 1)[0]
    return SHARD_DIM.get(stem.rsplit(".", 1)[-1])


def hf_rotary_view(meta: torch.Tensor, heads: int) -> torch.Tensor:
    """A view of Meta's q or k rows in Hugging Face's order (convert_llama_weights_to_hf's
    `permute`: within each head, the first components of the rotary pairs, then the second
    ones). Writing HF's rows into it, in order, un-permutes them with no copy."""
    rows, cols = meta.shape
    return meta.view(heads, rows // heads // 2, 2, cols).transpose(1, 2)


def hf_to_meta_rotary(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo Hugging Face's permutation of q or k rows (a new tensor)."""
    meta = torch.empty_like(w)
    hf_rotary_view(meta, heads).copy_(w.reshape(hf_rotary_view(meta, heads).shape))
    return meta


# ---------------------------------------------------------------------------------------------
# The model's shape, from either config file


@dataclass(frozen=True)
class LlamaShape:
    """What both layouts' configs say, with the FFN width explicit: Meta's params.json gives it
    through multiple_of / ffn_dim_multiplier (ModelArgs.hidden_dim), Hugging Face's config.json
    as intermediate_size. The attribute names are ModelArgs', so architecture() takes either."""

    dim: int
    n_layers: int
    n_heads: int
    kv_heads: int
    hidden_dim: int
    vocab_size: int
    norm_eps: float
    rope_theta: float
    config: str = "config"  # the file it came from, for messages

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def check(self) -> LlamaShape:
        if self.dim % self.n_heads or self.n_heads % self.kv_heads or self.head_dim % 2:
            raise ValueError(f"{self.config}: {self.dim=}, {self.n_heads=}, {self.kv_heads=} do "
                             "not make whole, even-sized heads shared by whole groups")
        return self


def meta_shape(params: dict, vocab_size: int, where: Path) -> LlamaShape:
    """params.json -> LlamaShape; vocab_size is the embedding's when params.json says -1."""
    if params.get("use_scaled_rope"):
        raise ValueError(f"{where}: use_scaled_rope (Llama 3.1's rotary scaling) is not "
                         "supported by OpenNMT-py 3.5.1")
    try:
        args = ModelArgs.from_params(params)
        return LlamaShape(
            dim=args.dim, n_layers=args.n_layers, n_heads=args.n_heads, kv_heads=args.kv_heads,
            hidden_dim=args.hidden_dim,
            vocab_size=args.vocab_size if args.vocab_size > 0 else vocab_size,
            norm_eps=float(args.norm_eps), rope_theta=float(args.rope_theta), config=str(where),
        ).check()
    except (TypeError, ZeroDivisionError) as e:
        raise ValueError(f"{where}: not a LLaMA params.json ({e})") from e


def hf_shape(config: dict, where: Path) -> LlamaShape:
    """config.json (transformers' LlamaConfig, 4.x or 5.x) -> LlamaShape, refusing what
    OpenNMT-py 3.5.1 cannot express."""
    if config.get("model_type", "llama") != "llama":
        raise ValueError(f"{where}: model_type {config['model_type']!r}, only 'llama' is supported")
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{where}: hidden_act {config['hidden_act']!r}, LLaMA's is 'silu'")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ValueError(f"{where}: attention_bias / mlp_bias are not LLaMA's")
    if config.get("tie_word_embeddings"):
        raise ValueError(f"{where}: tie_word_embeddings is not LLaMA's")
    rope = config.get("rope_parameters") or {}  # transformers 5; 4.x has rope_theta/rope_scaling
    scaling = config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type")
    if rope_type not in (None, "default"):
        raise ValueError(f"{where}: rotary scaling {rope_type!r} is not supported by OpenNMT-py")
    try:
        heads = config["num_attention_heads"]
        shape = LlamaShape(
            dim=config["hidden_size"], n_layers=config["num_hidden_layers"], n_heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            hidden_dim=config["intermediate_size"], vocab_size=config["vocab_size"],
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
            config=str(where),
        ).check()
    except KeyError as e:
        raise ValueError(f"{where}: {e.args[0]} missing (not a LlamaConfig)") from e
    if config.get("head_dim", shape.head_dim) != shape.head_dim:
        raise ValueError(f"{where}: head_dim {config['head_dim']} is not hidden_size / "
                         f"num_attention_heads = {shape.head_dim} (OpenNMT-py assumes it is)")
    return shape


def architecture(args: ModelArgs | LlamaShape) -> dict:
    """The OpenNMT-py options of a LLaMA. The finetune config restates them (override_opts).
    OpenNMT-py 3.5.1 builds the FFN with exactly `transformer_ff` rows (PositionwiseFeedForward
    takes d_ff as is), so it gets the checkpoint's width: ModelArgs derives it from params.json,
    LlamaShape holds it (intermediate_size for Hugging Face)."""
    return {
        "model_task": "lm",
        "encoder_type": "transformer_lm",
        "decoder_type": "transformer_lm",
        "layer_norm": "rms",
        "norm_eps": args.norm_eps,
        "pos_ffn_activation_fn": "silu",
        "max_relative_positions": -1,  # rotary
        "rotary_interleave": True,  # Meta's layout rotates interleaved pairs (HF's is undone)
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
    try:
        sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    except (OSError, RuntimeError) as e:  # sentencepiece says RuntimeError, even for a missing file
        raise ValueError(f"{tokenizer_model}: not a sentencepiece model "
                         f"({str(e).splitlines()[0]})") from e
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


# ---------------------------------------------------------------------------------------------
# The two layouts -> one plan of output tensors


@dataclass
class Planned:
    """One tensor of the output: its parts (one per shard) and the dimension they are joined on;
    or one part stored in another row order, read through `view` (the output -> a view of it in
    the file's order)."""

    meta_name: str
    parts: list[Source]
    dim: int | None = None
    view: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        shape = list(self.parts[0].shape)
        if self.dim is not None:
            shape[self.dim] = sum(p.shape[self.dim] for p in self.parts)
        return tuple(shape)

    @property
    def where(self) -> str:
        if len(self.parts) == 1:
            return str(self.parts[0].path)
        return f"{self.parts[0].path.parent}/{{{','.join(p.path.name for p in self.parts)}}}"

    def load(self, bounce: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=self.parts[0].dtype)
        if self.dim is None:
            self.parts[0].read_into(out if self.view is None else self.view(out), bounce)
        else:
            assert self.view is None
            start = 0
            for part in self.parts:  # dim 0: each part is a contiguous block of the output
                part.read_into(out.narrow(self.dim, start, part.shape[self.dim]), bounce)
                start += part.shape[self.dim]
        return out


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def load_meta_params(model_dir: Path) -> dict:
    path = model_dir / "params.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (Meta's checkpoint directory holds params.json)")
    return read_json(path)


def meta_shards(model_dir: Path) -> list[Path]:
    shards = sorted(model_dir.glob("consolidated.*.pth"))
    if not shards:
        raise FileNotFoundError(f"{model_dir / 'consolidated.00.pth'}: missing (no shard)")
    for i, shard in enumerate(shards):
        if shard.name != f"consolidated.{i:02d}.pth":
            raise FileNotFoundError(f"{model_dir / f'consolidated.{i:02d}.pth'}: missing shard")
    return shards


def _meta_join_dim(name: str, parts: list[Source], dim: int) -> int | None:
    joined = shard_dim(name) if len(parts) > 1 else None
    if name == "tok_embeddings.weight" and joined == 1 and all(p.shape[1] == dim for p in parts):
        joined = 0  # Llama 3: VocabParallelEmbedding splits the vocabulary
    return joined


def plan_meta(model_dir: Path) -> tuple[LlamaShape, dict[str, Planned]]:
    params = load_meta_params(model_dir)
    shards = meta_shards(model_dir)
    indexes = [index_file(s) for s in shards]
    plan: dict[str, Planned] = {}
    for name in indexes[0]:
        if name.endswith(META_SKIP):
            continue
        parts = []
        for shard, index in zip(shards, indexes, strict=True):
            if name not in index:
                raise ValueError(f"{shard}: tensor {name} is missing (it is in {shards[0].name})")
            parts.append(index[name])
        try:
            onmt_name(name)
        except KeyError:
            raise ValueError(f"{shards[0]}: unexpected tensor {name} (not LLaMA's)") from None
        planned = Planned(name, parts, _meta_join_dim(name, parts, params.get("dim", -1)))
        for shard, part in zip(shards, parts, strict=True):
            ok = part.dtype == parts[0].dtype and len(part.shape) == len(parts[0].shape) and all(
                a == b for i, (a, b) in enumerate(zip(part.shape, parts[0].shape, strict=True))
                if i != planned.dim)
            if not ok:
                raise ValueError(f"{shard}: {name} is {tuple(part.shape)} {part.dtype}, in "
                                 f"{shards[0].name} {tuple(parts[0].shape)} {parts[0].dtype}")
        plan[name] = planned
    for shard, index in zip(shards[1:], indexes[1:], strict=True):
        extra = set(index) - set(indexes[0])
        if extra:
            raise ValueError(f"{shard}: tensor {sorted(extra)[0]} is not in {shards[0].name}")
    emb = plan.get("tok_embeddings.weight")
    shape = meta_shape(params, emb.shape[0] if emb else -1, model_dir / "params.json")
    return shape, plan


def hf_weight_files(model_dir: Path) -> dict[Path, list[str] | None]:
    """Each weight file -> the tensor names its index assigns it (None: no index)."""
    for stem in HF_WEIGHTS:
        index = model_dir / f"{stem}.index.json"
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError(f"{index}: no weight_map")
            files: dict[Path, list[str] | None] = {}
            for name, file in weight_map.items():
                files.setdefault(model_dir / file, []).append(name)
            for file in files:
                if not file.is_file():
                    raise FileNotFoundError(f"{file}: missing shard (listed in {index.name})")
            return files
        if (model_dir / stem).is_file():
            return {model_dir / stem: None}
        stem_, ext = stem.split(".")
        if any(model_dir.glob(f"{stem_}-*-of-*.{ext}")):
            raise FileNotFoundError(f"{index}: missing (the checkpoint is sharded)")
    raise FileNotFoundError(f"{model_dir / HF_WEIGHTS[0]}: missing (config.json but no "
                            f"{', '.join(HF_WEIGHTS)} or their .index.json)")


def plan_hf(model_dir: Path) -> tuple[LlamaShape, dict[str, Planned]]:
    config_path = model_dir / "config.json"
    config = read_json(config_path)
    shape = hf_shape(config, config_path)
    plan: dict[str, Planned] = {}
    for file, listed in hf_weight_files(model_dir).items():
        tensors = index_file(file)
        for name in listed or []:
            if name not in tensors:
                raise ValueError(f"{file}: tensor {name} is missing (its index lists it here)")
        for hf_name, tensor in tensors.items():
            try:
                name = meta_name_of_hf(hf_name)
            except (KeyError, ValueError):
                raise ValueError(f"{file}: unexpected tensor {hf_name} (not LLaMA's)") from None
            if name is None:
                continue
            if name in plan:
                raise ValueError(f"{file}: tensor {hf_name} is also in {plan[name].where}")
            heads = {"wq": shape.n_heads, "wk": shape.kv_heads}.get(name.split(".")[-2])
            view = None if heads is None else partial(hf_rotary_view, heads=heads)
            plan[name] = Planned(name, [tensor], None, view)
    return shape, plan


def detect_layout(model_dir: Path) -> str:
    """"meta" (params.json) or "hf" (config.json); Meta's when both and it has its shards."""
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such directory")
    meta, hf = (model_dir / "params.json").is_file(), (model_dir / "config.json").is_file()
    if meta and (not hf or any(model_dir.glob("consolidated.*.pth"))):
        return "meta"
    if hf:
        return "hf"
    raise ValueError(f"{model_dir}: unknown checkpoint layout: neither params.json (Meta's) "
                     "nor config.json (Hugging Face's)")


def read_plan(model_dir: str | Path) -> tuple[LlamaShape, dict[str, Planned]]:
    """The model's shape and where each of its tensors lies; checked, nothing read yet."""
    model_dir = Path(model_dir)
    layout = detect_layout(model_dir)
    shape, plan = (plan_meta if layout == "meta" else plan_hf)(model_dir)
    check_shapes(plan, shape)
    return shape, plan


def read_shape(model_dir: str | Path) -> LlamaShape:
    """The model's shape from either layout (vocabulary size included; reads no weights)."""
    return read_plan(model_dir)[0]


def meta_shapes(shape: LlamaShape | ModelArgs) -> dict[str, tuple[int, ...]]:
    """Meta's tensor names and their whole (unsharded) shapes, for a model of this shape."""
    d, hd, kv, ff = shape.dim, shape.head_dim, shape.kv_heads, shape.hidden_dim
    expected = {
        "tok_embeddings.weight": (shape.vocab_size, d),
        "norm.weight": (d,),
        "output.weight": (shape.vocab_size, d),
    }
    per_layer = {
        "attention.wq.weight": (shape.n_heads * hd, d),
        "attention.wk.weight": (kv * hd, d),
        "attention.wv.weight": (kv * hd, d),
        "attention.wo.weight": (d, shape.n_heads * hd),
        "attention_norm.weight": (d,),
        "feed_forward.w1.weight": (ff, d),
        "feed_forward.w2.weight": (d, ff),
        "feed_forward.w3.weight": (ff, d),
        "ffn_norm.weight": (d,),
    }
    for i in range(shape.n_layers):
        expected.update({f"layers.{i}.{k}": v for k, v in per_layer.items()})
    return expected


def check_shapes(plan: dict[str, Planned], shape: LlamaShape) -> None:
    """Every tensor must have the shape the config implies: a wrong config trains for days
    before anyone notices otherwise."""
    expected = meta_shapes(shape)
    config = Path(shape.config).name
    for name, want in expected.items():
        if name not in plan:
            raise ValueError(f"{Path(shape.config).parent}: tensor {name} is missing, {config} "
                             "implies it")
        got = plan[name].shape
        if got != want:
            hint, split = "", shard_dim(name)
            if config == "params.json" and split is not None and len(got) == 2 and \
                    got[1 - split] == want[1 - split] and want[split] % got[split] == 0:
                hint = f" (is a shard missing? {len(plan[name].parts)} consolidated.*.pth found)"
            raise ValueError(f"{plan[name].where}: {name} has shape {got}, {config} implies "
                             f"{want}{hint}")
    extra = set(plan) - set(expected)
    if extra:
        raise ValueError(f"{shape.config}: unexpected tensors {sorted(extra)[:5]} (more layers "
                         f"than its {shape.n_layers}?)")


# ---------------------------------------------------------------------------------------------


def convert(model_dir: str | Path, tokenizer_model: str | Path,
            progress: bool | None = None) -> dict:
    """Meta's or Hugging Face's checkpoint in `model_dir` -> an OpenNMT-py checkpoint dict.
    Everything is checked before the first weight is read; the weights are then read one tensor
    at a time (see the module's docstring)."""
    shape, plan = read_plan(model_dir)
    vocab = vocabulary(tokenizer_model)
    if shape.vocab_size != len(vocab):
        raise ValueError(
            f"{tokenizer_model}: the tokenizer has {len(vocab)} pieces but the model in "
            f"{model_dir} has {shape.vocab_size} embeddings"
        )
    opt = checkpoint_options(architecture(shape), len(vocab))
    model: dict[str, torch.Tensor] = {}
    bounce = torch.empty(BOUNCE_BYTES, dtype=torch.uint8)
    for name, planned in tqdm(plan.items(), desc="tensors", unit="tensor",
                              disable=None if progress is None else not progress):
        model[onmt_name(name)] = planned.load(bounce)
    weight = model.pop("generator.weight")
    generator = {"weight": weight, "bias": torch.zeros(weight.shape[0], dtype=weight.dtype)}
    return {
        "model": model,
        "generator": generator,
        "vocab": {"src": vocab, "tgt": vocab, "data_task": "lm", "decoder_start_token": "<s>"},
        "opt": opt,
        "optim": None,
    }


def nbytes(checkpoint: dict) -> int:
    tensors = [*checkpoint["model"].values(), *checkpoint["generator"].values()]
    return sum(t.numel() * t.element_size() for t in tensors)

