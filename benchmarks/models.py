"""The benchmarks' models: one random LLaMA of a chosen width, written as a Hugging Face
LlamaForCausalLM (config.json + safetensors: what transformers and llama.cpp's converter read),
then converted the workflow's way: scripts/convert_llama.py to OpenNMT-py (`py` mode),
scripts/extract_vocabulary.py, scripts/release_model.py to CTranslate2 (`ct2` mode), one release
per quantization.

    build(work, dim=512, layers=6)                    # benchmarks/peers.py's 53M model
    build(work, dim=4096, layers=2, heads=32)         # LLaMA-7B's width: 667M parameters

Heads are 64 wide unless said (LLaMA-7B's: 128), the FFN is Meta's width for the dim
(vicuna.weights.llama.ModelArgs, multiple_of 256: 11008 at dim 4096), the vocabulary the tokenizer's
(common.tokenizer_model).
"""

from __future__ import annotations

from pathlib import Path

import common

SEED = 0


def shape(dim: int, layers: int, vocab: int, heads: int | None = None) -> dict:
    """The model's shape as Meta's ModelArgs gives it (vicuna.weights.llama); heads 64 wide unless given
    (LLaMA-7B's are 128: 32 at dim 4096)."""
    from vicuna.weights.llama import ModelArgs

    args = ModelArgs(dim=dim, n_layers=layers, n_heads=heads or dim // 64, vocab_size=vocab,
                     multiple_of=256)
    return {"dim": dim, "layers": layers, "heads": args.n_heads, "ffn": args.hidden_dim,
            "vocab": vocab}


def write_hf(out: Path, tokenizer: Path, dim: int, layers: int, heads: int | None = None,
             dtype: str = "float32") -> dict:
    """A random LlamaForCausalLM in `out` (its tokenizer.model beside it, as llama.cpp's
    converter wants); its shape and parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from vicuna import tokenizer as tok

    s = shape(dim, layers, tok.load(tokenizer).get_piece_size(), heads)
    config = LlamaConfig(vocab_size=s["vocab"], hidden_size=dim, intermediate_size=s["ffn"],
                         num_hidden_layers=layers, num_attention_heads=s["heads"],
                         num_key_value_heads=s["heads"], max_position_embeddings=2048,
                         rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=common.BOS,
                         eos_token_id=common.EOS)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    s["params"] = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    (out / "tokenizer.model").write_bytes(tokenizer.read_bytes())
    return s


def build(work: Path, dim: int, layers: int, quantizations: tuple[str, ...] = ("float32", "int8"),
          heads: int | None = None) -> dict:
    """The model in every format the workflow makes, in `work`: a manifest of paths and shape."""
    tok = common.tokenizer_model(work)
    hf = work / "hf"
    manifest: dict = {"tokenizer": str(tok), "hf": str(hf), **write_hf(hf, tok, dim, layers, heads)}
    onmt = work / "model.pt"
    common.script("convert_llama.py", "--model_dir", str(hf), "--tokenizer_model", str(tok),
                  "--output", str(onmt), "--force")  # --force: a work folder built again
    common.script("extract_vocabulary.py", "-model", str(onmt), "-out_file", str(work / "vocab.txt"),
                  "-force")
    manifest.update(onmt=str(onmt), vocab_txt=str(work / "vocab.txt"))
    for q in quantizations:
        common.script("release_model.py", "--model", str(onmt), "--output", str(work / f"ct2_{q}"),
                      "--quantization", q, "--force")
        manifest[f"ct2_{q}"] = str(work / f"ct2_{q}")
    return manifest


def size_bytes(path: str | Path) -> int:
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)
