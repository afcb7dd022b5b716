"""A LLaMA checkpoint -> OpenNMT-py checkpoint: a straight loop over tensors, named through the
tables of vicuna/weights/name_maps.py (HF -> Meta -> OpenNMT-py), shaped as vicuna/weights/shape.py says.

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
2.1x the output's size (the readers are in vicuna/weights/lazy_tensors.py). Nothing is read before every
shape has been checked against the config.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import sentencepiece as spm
import torch
from tqdm import tqdm

from vicuna import tokenizer
from vicuna.weights.layout import detect_layout, hf_weight_files, load_meta_params, meta_shards, read_json
from vicuna.weights.lazy_tensors import BOUNCE_BYTES, Source, index_file
from vicuna.weights.name_maps import (
    HF_SKIP,
    HF_TO_META,
    META_SKIP,
    META_TO_ONMT,
    hf_permuted_heads,
    hf_rotary_view,
    rename,
)
from vicuna.weights.shape import CONTEXT_OPTION, LlamaShape, architecture, meta_shapes

# Model-parallel shards split these along dim 0 (output features) or 1 (input features);
# norms are repeated in every shard. (LLaMA 1 and 2 split tok_embeddings along dim 1, Llama 3's
# VocabParallelEmbedding along dim 0: the shapes tell which, see _meta_join_dim.)
SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
             "wo": 1, "w2": 1, "tok_embeddings": 1}


def shard_dim(meta_name: str) -> int | None:
    stem = meta_name.rsplit(".", 1)[0]
    return SHARD_DIM.get(stem.rsplit(".", 1)[-1])


def meta_name_of_hf(hf_name: str) -> str | None:
    """A Hugging Face tensor's Meta name; None for a tensor to skip; KeyError for one this
    converter does not know."""
    if hf_name.endswith(HF_SKIP):
        return None
    return rename(hf_name, HF_TO_META)


def vocabulary(tokenizer_model: str | Path) -> list[str]:
    """The tokenizer's pieces, with OpenNMT-py's pad token at its id (3)."""
    if (kind := tokenizer.other_kind(tokenizer_model)) is not None:
        raise ValueError(f"{tokenizer_model}: {kind}")
    try:
        sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    except (OSError, RuntimeError) as e:  # sentencepiece says RuntimeError, even for a missing file
        raise ValueError(f"{tokenizer_model}: not a sentencepiece model "
                         f"({str(e).splitlines()[0]})") from e
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    # OpenNMT-py's pad takes id 3's place, and its embedding is masked out: a piece text can
    # give (LLaMA's is the byte <0x00>, which its text never holds; control pieces, as Mistral
    # v0.3's [INST], are never given by text) would be lost
    pad = tokenizer.PAD_ID
    if len(pieces) <= pad or not (pieces[pad] == "<0x00>" or sp.is_control(pad)
                                  or sp.is_unused(pad)):
        raise ValueError(f"{tokenizer_model}: piece {pad} is "
                         f"{pieces[pad] if len(pieces) > pad else 'missing'!r}, not LLaMA's "
                         f"<0x00> byte: OpenNMT-py's pad token takes its id")
    pieces[pad] = tokenizer.PAD
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
    opt.decoder_start_token = tokenizer.BOS
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
            rename(name, META_TO_ONMT)
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
    shape = LlamaShape.from_params(params, emb.shape[0] if emb else -1, model_dir / "params.json")
    return shape, plan


def plan_hf(model_dir: Path) -> tuple[LlamaShape, dict[str, Planned]]:
    config_path = model_dir / "config.json"
    config = read_json(config_path)
    shape = LlamaShape.from_config(config, config_path)
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
            heads = hf_permuted_heads(name, shape)
            view = None if heads is None else partial(hf_rotary_view, heads=heads)
            plan[name] = Planned(name, [tensor], None, view)
    return shape, plan


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
        # Code Llama 7B's 32,016 rows go with its own 32,016-piece tokenizer; rows no piece
        # reaches (or pieces no row holds) are no model OpenNMT-py or the releases can hold
        raise ValueError(
            f"{tokenizer_model}: the tokenizer has {len(vocab)} pieces but the model in "
            f"{model_dir} has {shape.vocab_size} embeddings: give the model's own tokenizer "
            f"(the sizes must be equal)"
        )
    opt = checkpoint_options(architecture(shape), len(vocab))
    setattr(opt, CONTEXT_OPTION, shape.context)
    model: dict[str, torch.Tensor] = {}
    bounce = torch.empty(BOUNCE_BYTES, dtype=torch.uint8)
    for name, planned in tqdm(plan.items(), desc="tensors", unit="tensor",
                              disable=None if progress is None else not progress):
        model[rename(name, META_TO_ONMT)] = planned.load(bounce)
    weight = model.pop("generator.weight")
    generator = {"weight": weight, "bias": torch.zeros(weight.shape[0], dtype=weight.dtype)}
    return {
        "model": model,
        "generator": generator,
        "vocab": {"src": vocab, "tgt": vocab, "data_task": "lm", "decoder_start_token": tokenizer.BOS},
        "opt": opt,
        "optim": None,
    }


def nbytes(checkpoint: dict) -> int:
    tensors = [*checkpoint["model"].values(), *checkpoint["generator"].values()]
    return sum(t.numel() * t.element_size() for t in tensors)

