"""The shape of a LLaMA, as each layout states it: Meta's params.json (ModelArgs, llama2.c's), the
Hugging Face config.json (read, and written back for the export) and the OpenNMT-py options
(`architecture`, and read back from a checkpoint's `opt`); with the tensor names and shapes it
implies (`meta_shapes`).

A user's file must state every key that fixes the architecture: a missing n_heads would
otherwise take some default and convert to a wrong model without a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# params.json keys without which the model is unknown (every Meta release states them; Mistral's
# own layout states hidden_dim instead of multiple_of)
META_REQUIRED = ("dim", "n_layers", "n_heads", "norm_eps")
# params.json keys read (Meta's LLaMA 1, Llama 2, Code Llama, Llama 3; Mistral's own layout adds
# head_dim, hidden_dim and sliding_window); any other key is refused by name, never ignored: it
# may change the model (Mixtral's `moe`, Llama 3.1's `use_scaled_rope`, ...)
META_KEYS = (*META_REQUIRED, "n_kv_heads", "vocab_size", "multiple_of", "ffn_dim_multiplier",
             "rope_theta", "head_dim", "hidden_dim", "sliding_window", "max_seq_len",
             "max_batch_size", "use_scaled_rope")
# config.json's model_type -> its architecture class: the two whose weights and computation
# OpenNMT-py 3.5.1 expresses (Mistral is LLaMA with grouped-query attention and a sliding window)
HF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}
# config.json keys without which the model is unknown (LlamaConfig's defaults are a 7B's)
HF_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "vocab_size")
# OpenNMT-py options a checkpoint must hold to be a LLaMA of known shape
ONMT_REQUIRED = ("dec_layers", "heads", "num_kv", "hidden_size", "transformer_ff", "norm_eps",
                 "rotary_theta")
# The base's context (config.json's max_position_embeddings), kept in the checkpoint's options
# under this name: not an OpenNMT-py option (it ignores it; RoPE has no table to size), read back
# by the releases (config.json, the GGUF's context_length)
CONTEXT_OPTION = "max_position_embeddings"
LLAMA_CONTEXT = 2048  # LLaMA's context, in tokens: config.json's max_position_embeddings, and the
# inference context budget when the options file sets no max_context_length (vicuna.serve.options)


@dataclass
class ModelArgs:
    """Meta's params.json, as llama2.c's and Meta's model.py hold it (the defaults are LLaMA 7B's,
    for models built in code; a file goes through from_params, which takes no default for the
    architecture)."""

    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None
    vocab_size: int = -1  # Meta's LLaMA 1 params.json says -1: the tokenizer decides
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    @classmethod
    def from_params(cls, params: dict, vocab_size: int | None = None,
                    where: str | Path = "params.json") -> ModelArgs:
        missing = [k for k in META_REQUIRED if k not in params]
        if missing:
            raise ValueError(f"{where}: {', '.join(missing)} missing (a LLaMA params.json states "
                             f"{', '.join(META_REQUIRED)})")
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        args = cls(**known)
        if vocab_size is not None:
            args.vocab_size = vocab_size
        return args

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_dim(self) -> int:
        """Meta's FFN width: 2/3 of 4*dim, scaled, rounded up to a multiple of multiple_of."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


@dataclass(frozen=True)
class LlamaShape:
    """What every layout's config says, with the FFN width explicit: Meta's params.json gives it
    through multiple_of / ffn_dim_multiplier (ModelArgs.hidden_dim), Hugging Face's config.json
    as intermediate_size, OpenNMT-py as transformer_ff. The attribute names are ModelArgs', so
    architecture() and meta_shapes() take either."""

    dim: int
    n_layers: int
    n_heads: int
    kv_heads: int
    hidden_dim: int
    vocab_size: int
    norm_eps: float
    rope_theta: float
    # Mistral's: each position attends to itself and the window - 1 positions before it (None:
    # to every position before it, LLaMA's)
    sliding_window: int | None = None
    context: int | None = None  # the positions it was trained for, where its config says
    config: str = "config"  # the file it came from, for messages

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def architecture(self) -> str:
        """The transformers class of this model: Mistral's where it has a sliding window."""
        return HF_ARCHITECTURES["mistral" if self.sliding_window else "llama"]

    def check(self) -> LlamaShape:
        if self.dim % self.n_heads or self.n_heads % self.kv_heads or self.head_dim % 2:
            raise ValueError(f"{self.config}: {self.dim=}, {self.n_heads=}, {self.kv_heads=} do "
                             "not make whole, even-sized heads shared by whole groups")
        for name, least in (("sliding_window", 2), ("context", 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < least):
                raise ValueError(f"{self.config}: {name} {value!r} is not an integer of at "
                                 f"least {least}")
        return self

    @classmethod
    def from_params(cls, params: dict, vocab_size: int, where: str | Path) -> LlamaShape:
        """params.json (Meta's, or Mistral's own layout) -> LlamaShape; vocab_size is the
        embedding's when params.json says -1 (LLaMA 1 and Llama 2 do)."""
        unknown = sorted(k for k in params if k not in META_KEYS)
        if unknown:
            raise ValueError(f"{where}: {', '.join(map(repr, unknown))}: not a key of a LLaMA "
                             "or Mistral params.json, and this converter does not ignore what "
                             "may change the model")
        if params.get("use_scaled_rope"):
            raise ValueError(f"{where}: use_scaled_rope (Llama 3.1's rotary scaling) is not "
                             "supported by OpenNMT-py 3.5.1")
        if "multiple_of" not in params and "hidden_dim" not in params:
            raise ValueError(f"{where}: multiple_of missing (a LLaMA params.json states "
                             f"{', '.join(META_REQUIRED)} and multiple_of, Mistral's hidden_dim "
                             "instead)")
        args = ModelArgs.from_params(params, where=where)
        try:
            shape = cls(
                dim=args.dim, n_layers=args.n_layers, n_heads=args.n_heads,
                kv_heads=args.kv_heads, hidden_dim=params.get("hidden_dim") or args.hidden_dim,
                vocab_size=args.vocab_size if args.vocab_size > 0 else vocab_size,
                norm_eps=float(args.norm_eps), rope_theta=float(args.rope_theta),
                sliding_window=params.get("sliding_window"), context=params.get("max_seq_len"),
                config=str(where),
            ).check()
        except (TypeError, ZeroDivisionError) as e:
            raise ValueError(f"{where}: not a LLaMA params.json ({e})") from e
        if (params.get("head_dim") or shape.head_dim) != shape.head_dim:
            raise ValueError(f"{where}: head_dim {params['head_dim']} is not dim / n_heads = "
                             f"{shape.head_dim} (OpenNMT-py assumes it is)")
        return shape

    @classmethod
    def from_config(cls, config: dict, where: str | Path) -> LlamaShape:
        """config.json (transformers' LlamaConfig or MistralConfig, 4.x or 5.x) -> LlamaShape,
        refusing what OpenNMT-py 3.5.1 cannot express."""
        model_type = config.get("model_type", "llama")
        if model_type not in HF_ARCHITECTURES:
            raise ValueError(f"{where}: model_type {model_type!r}, only "
                             f"{' and '.join(map(repr, HF_ARCHITECTURES))} are supported")
        if config.get("hidden_act", "silu") != "silu":
            raise ValueError(f"{where}: hidden_act {config['hidden_act']!r}, LLaMA's is 'silu'")
        if config.get("attention_bias") or config.get("mlp_bias"):
            raise ValueError(f"{where}: attention_bias / mlp_bias are not LLaMA's")
        if config.get("tie_word_embeddings"):
            raise ValueError(f"{where}: tie_word_embeddings is not LLaMA's")
        rope = config.get("rope_parameters") or {}  # transformers 5; 4.x: rope_theta/rope_scaling
        scaling = config.get("rope_scaling") or {}
        for rope_type in (rope.get("rope_type"), scaling.get("rope_type"), scaling.get("type")):
            if rope_type not in (None, "default"):  # either file generation may state it
                raise ValueError(f"{where}: rotary scaling {rope_type!r} is not supported by "
                                 "OpenNMT-py")
        # MistralConfig's default window (4096) is not a model's: the file must say (null: none)
        required = (*HF_REQUIRED, "sliding_window") if model_type == "mistral" else HF_REQUIRED
        missing = [k for k in required if k not in config]
        if missing:
            raise ValueError(f"{where}: {', '.join(missing)} missing (not a "
                             f"{model_type.capitalize()}Config: it states {', '.join(required)})")
        heads = config["num_attention_heads"]
        try:
            shape = cls(
                dim=config["hidden_size"], n_layers=config["num_hidden_layers"], n_heads=heads,
                kv_heads=config.get("num_key_value_heads") or heads,
                hidden_dim=config["intermediate_size"], vocab_size=config["vocab_size"],
                norm_eps=float(config.get("rms_norm_eps", 1e-6)),
                rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
                # LlamaForCausalLM has no window, whatever its config says; MistralConfig's
                # null is none (Mistral v0.2 and later)
                sliding_window=config.get("sliding_window") if model_type == "mistral" else None,
                context=config.get("max_position_embeddings"),
                config=str(where),
            ).check()
        except (TypeError, ZeroDivisionError) as e:
            raise ValueError(f"{where}: not a {model_type.capitalize()}Config ({e})") from e
        if (config.get("head_dim") or shape.head_dim) != shape.head_dim:  # null: the quotient
            raise ValueError(f"{where}: head_dim {config['head_dim']} is not hidden_size / "
                             f"num_attention_heads = {shape.head_dim} (OpenNMT-py assumes it is)")
        return shape

    @classmethod
    def from_opt(cls, opt: Any, vocab_size: int, where: str | Path) -> LlamaShape:
        """An OpenNMT-py checkpoint's options -> LlamaShape; a model that is not a LLaMA as
        architecture() writes it (another norm, biases, rotary layout, ...) is refused naming
        the option, since no LlamaForCausalLM could hold it."""
        missing = [k for k in ONMT_REQUIRED if getattr(opt, k, None) is None]
        if missing:
            raise ValueError(f"{where}: options {', '.join(missing)} missing (not a converted "
                             "LLaMA)")
        shape = cls(
            dim=opt.hidden_size, n_layers=opt.dec_layers, n_heads=opt.heads,
            kv_heads=opt.num_kv or opt.heads, hidden_dim=opt.transformer_ff,
            vocab_size=vocab_size, norm_eps=float(opt.norm_eps),
            rope_theta=float(opt.rotary_theta),
            sliding_window=model_window(getattr(opt, "sliding_window", 0)),
            context=getattr(opt, CONTEXT_OPTION, None), config=str(where),
        ).check()
        for key, want in architecture(shape).items():
            got = getattr(opt, key, None)
            if key in ("encoder_type", "model_task"):  # not read by a decoder-only LM
                continue
            if got != want:
                raise ValueError(f"{where}: option {key} is {got!r}, a LLaMA's is {want!r} "
                                 "(not a converted LLaMA)")
        return shape

    def to_config(self, dtype: str, max_positions: int | None = None) -> dict[str, Any]:
        """transformers' config.json of a LlamaForCausalLM (MistralForCausalLM where it has a
        sliding window) of this shape (read by transformers 4.x and 5.x, vLLM and the
        converter's from_config); max_positions: its context, LLaMA's 2048 where unknown."""
        mistral = {"sliding_window": self.sliding_window} if self.sliding_window else {}
        return {
            "architectures": [self.architecture],
            "model_type": "mistral" if mistral else "llama",
            "hidden_size": self.dim,
            "intermediate_size": self.hidden_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,  # transformers 4.x; 5.x reads rope_parameters
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "max_position_embeddings": max_positions or self.context or LLAMA_CONTEXT,
            **mistral,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": dtype,  # transformers 4.x's name
            "dtype": dtype,
            "use_cache": True,
        }


def onmt_window(window: int | None) -> int:
    """OpenNMT-py's sliding_window option for a model's window (0: none). OpenNMT-py 3.5.1's
    band mask (TransformerDecoderLayerBase._compute_dec_mask: tril, then triu(-sliding_window))
    lets a position see itself and `sliding_window` positions before it; Mistral's window, as
    transformers and Mistral's reference code count it, holds the position itself: one fewer
    before it (measured: OpenNMT-py's logits are transformers' with window - 1, not window)."""
    return window - 1 if window else 0


def model_window(sliding_window: int | None) -> int | None:
    """The model's window (transformers' sliding_window) of an OpenNMT-py sliding_window."""
    return sliding_window + 1 if sliding_window else None


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
        "sliding_window": onmt_window(getattr(args, "sliding_window", None)),
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
