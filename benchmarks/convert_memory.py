"""Peak memory and speed of scripts/convert_llama.py on a random LLaMA checkpoint of real size.

    .venv/bin/python benchmarks/convert_memory.py [--dim 2048 --layers 16 --shards 2 --layout meta]

Writes a random float16 checkpoint (default: dim 2048, 16 layers, vocabulary 32,000, 2 shards,
about 1.9 GB) into a temporary folder, converts it in a subprocess and reports the subprocess's
peak resident memory (ru_maxrss of that child, from os.wait4) against the output's size, and the
seconds per GB. A second subprocess that only imports what the converter imports gives the fixed
cost. Everything generated is deleted at the end. The tokenizer is the real LLaMA one
(../shared/fixtures/llama-tokenizer/tokenizer.model, 32,000 pieces) where present; elsewhere a small
sentencepiece model is trained (common.tokenizer_model) and the vocabulary takes its size.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, measure, tokenizer_model

GB = 1e9


def tokenizer(tmp: Path) -> tuple[Path, int]:
    from vicuna import tokenizer as tok

    path = tokenizer_model(tmp)
    return path, tok.load(path).get_piece_size()


def write_meta(model_dir: Path, params: dict, shapes: dict, shards: int) -> None:
    """One shard in memory at a time (the generator's own memory is not measured)."""
    import torch

    from vicuna.weights.convert import shard_dim

    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps(params))
    for k in range(shards):
        shard = {}
        for name, shape in shapes.items():
            split = shard_dim(name)
            part = list(shape)
            if split is not None:
                part[split] //= shards
            shard[name] = torch.randn(part, dtype=torch.float16)
        torch.save(shard, model_dir / f"consolidated.{k:02d}.pth")
        del shard


def write_hf(model_dir: Path, params: dict, shapes: dict, shards: int, hidden: int) -> None:
    """config.json + model-0000k-of-0000n.safetensors + index (the q/k permutation does not
    matter to memory or speed: the weights are random)."""
    import torch
    from safetensors.torch import save_file

    from vicuna.weights.name_maps import META_TO_HF, rename

    model_dir.mkdir()
    config = {"model_type": "llama", "hidden_size": params["dim"],
              "num_hidden_layers": params["n_layers"], "num_attention_heads": params["n_heads"],
              "num_key_value_heads": params["n_kv_heads"], "intermediate_size": hidden,
              "vocab_size": shapes["tok_embeddings.weight"][0], "rms_norm_eps": 1e-5}
    (model_dir / "config.json").write_text(json.dumps(config))
    names = list(shapes)
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        shard = {}
        for name in names[k * len(names) // shards:(k + 1) * len(names) // shards]:
            hf = rename(name, META_TO_HF)
            shard[hf] = torch.randn(shapes[name], dtype=torch.float16)
            weight_map[hf] = file
        save_file(shard, model_dir / file)
        del shard
    (model_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def generate(args: argparse.Namespace, tmp: Path) -> None:
    """The random checkpoint and the tokenizer, in tmp/model and tmp/generated.json."""
    from vicuna.weights.shape import ModelArgs, meta_shapes

    tok, vocab = tokenizer(tmp)
    params = {"dim": args.dim, "n_layers": args.layers, "n_heads": args.heads,
              "n_kv_heads": args.kv_heads, "multiple_of": 256, "norm_eps": 1e-5, "vocab_size": -1}
    model_args = ModelArgs.from_params(params, vocab_size=vocab)
    hidden = model_args.hidden_dim
    shapes = meta_shapes(model_args)
    if args.layout == "meta":
        write_meta(tmp / "model", params, shapes, args.shards)
    else:
        write_hf(tmp / "model", params, shapes, args.shards, hidden)
    (tmp / "generated.json").write_text(json.dumps({"tokenizer": str(tok), "vocab": vocab}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv_heads", type=int, default=16)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--layout", choices=["meta", "hf"], default="meta")
    p.add_argument("--workdir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    p.add_argument("--generate_into", type=Path, help=argparse.SUPPRESS)  # the child's part
    args = p.parse_args()
    if args.generate_into:
        generate(args, args.generate_into)
        return

    # This process stays small (no torch): a child's ru_maxrss starts from its parent's
    # resident size at fork, so a big parent would inflate the figures.
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="convert_memory.") as tmp_name:
        tmp = Path(tmp_name)
        start = time.monotonic()
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--generate_into", str(tmp)],
                       check=True)
        generated = json.loads((tmp / "generated.json").read_text())
        model_dir = tmp / "model"
        size_in = sum(f.stat().st_size for f in model_dir.iterdir())
        print(f"generated {size_in / GB:.2f} GB ({args.layout}, {args.shards} shards, vocab "
              f"{generated['vocab']}) in {time.monotonic() - start:.0f} s", flush=True)

        out = tmp / "out.pt"
        cmd = [sys.executable, str(REPO / "scripts" / "convert_llama.py"), "--model_dir",
               str(model_dir), "--tokenizer_model", generated["tokenizer"], "--output", str(out)]
        print("$", shlex.join(cmd), flush=True)
        seconds, peak, status = measure(cmd)
        if status != 0:
            sys.exit(f"error: the converter exited with status {status}")
        size_out = out.stat().st_size
        _, base, _ = measure([sys.executable, "-c", "import torch, sentencepiece, onmt.opts, "
                              "onmt.utils.parse, vicuna.weights.convert"], log=Path(os.devnull))
        print(f"input {size_in / GB:.3f} GB, output {size_out / GB:.3f} GB")
        print(f"peak RSS {peak / GB:.3f} GB = {peak / size_out:.2f} x the output "
              f"(imports alone: {base / GB:.3f} GB; above them: {(peak - base) / size_out:.2f} x)")
        print(f"{seconds:.1f} s, {seconds / (size_out / GB):.1f} s/GB "
              "(the page cache was warm from generating the input)")


if __name__ == "__main__":
    main()
