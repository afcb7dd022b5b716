"""convert_llama.py and extract_vocabulary.py: LLaMA checkpoints -> OpenNMT-py, same logits.

The reference for Meta's and Hugging Face's layouts alike is transformers' LlamaForCausalLM (an
implementation independent of this project's): each fixture is written from one random model,
with save_pretrained (Hugging Face) or as Meta's shards (its q and k rows permuted back to the
interleaved rotary layout by this file's own code, each tensor split per Meta's model-parallel
layout).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import LLAMA_TOKENIZER, REPO, run_script

from vicuna.weights import checkpoint, convert, llama, name_maps


def test_converted_model_gives_the_reference_logits(tiny_meta):
    reference = llama.load_meta(tiny_meta["meta"])
    converted = checkpoint.build_model(checkpoint.load(tiny_meta["onmt"]))
    torch.manual_seed(1)
    tokens = torch.randint(4, reference.args.vocab_size, (3, 50))  # from 4: id 3 is OpenNMT-py's pad
    diff = (reference(tokens) - checkpoint.logits(converted, tokens)).abs().max().item()
    assert diff <= 1e-4


def test_vocabulary_is_the_tokenizer_with_the_pad_at_id_3(tiny_meta, tmp_path):
    import sentencepiece as spm

    run_script("extract_vocabulary.py", "-model", str(tiny_meta["onmt"]),
               "-out_file", str(tmp_path / "vocab.txt"), "-side", "src")
    vocab = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    sp = spm.SentencePieceProcessor(model_file=str(tiny_meta["tokenizer"]))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert vocab[:3] == ["<unk>", "<s>", "</s>"] and vocab[3] == "<blank>"
    assert vocab[4:] == pieces[4:] and len(vocab) == len(pieces)


@pytest.mark.skipif(not LLAMA_TOKENIZER.is_file(), reason="real LLaMA tokenizer fixture absent")
def test_real_llama_tokenizer_vocabulary():
    vocab = convert.vocabulary(LLAMA_TOKENIZER)
    assert len(vocab) == 32000
    assert vocab[3] == "<blank>" and vocab[13] == "<0x0A>" and vocab[:3] == ["<unk>", "<s>", "</s>"]


def test_existing_output_is_refused_without_force(tiny_meta):
    before = tiny_meta["onmt"].read_bytes()
    result = run_script("convert_llama.py", "--model_dir", str(tiny_meta["meta"]),
                        "--tokenizer_model", str(tiny_meta["tokenizer"]),
                        "--output", str(tiny_meta["onmt"]), check=False)
    assert result.returncode != 0 and "exists (pass --force" in result.stderr
    assert str(tiny_meta["onmt"]) in result.stderr and len(result.stderr.splitlines()) == 1
    assert tiny_meta["onmt"].read_bytes() == before


def test_tokenizer_size_mismatch_is_refused_and_nothing_is_written(tiny_meta, tmp_path):
    from vicuna import tokenizer

    other = tokenizer.train(["only a few words here"] * 20, 280, tmp_path / "other.model")
    assert other.get_piece_size() != llama.load_meta(tiny_meta["meta"]).args.vocab_size
    out = tmp_path / "out.pt"
    result = run_script("convert_llama.py", "--model_dir", str(tiny_meta["meta"]),
                        "--tokenizer_model", str(tmp_path / "other.model"), "--output", str(out),
                        check=False)
    assert result.returncode != 0 and "other.model" in result.stderr and "pieces" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "other.model"]


# --------------------------------------------------------------------------------------------
# Meta's and Hugging Face's layouts against transformers' LlamaForCausalLM

# Two random models: multi-head attention with LLaMA's defaults, and grouped-query attention
# with Llama 2 70B's FFN rule (ffn_dim_multiplier) and other rotary base and norm epsilon.
MODELS = {
    "mha": dict(heads=4, kv_heads=4, multiple_of=16, ffn_dim_multiplier=None, ff=176,
                norm_eps=1e-5, rope_theta=10000.0),
    "gqa": dict(heads=8, kv_heads=2, multiple_of=32, ffn_dim_multiplier=1.3, ff=224,
                norm_eps=1e-6, rope_theta=500000.0),
}
# case -> (model, layout, shards)
CASES = {
    "meta-1-shard": ("mha", "meta", 1),
    "meta-2-shards": ("mha", "meta", 2),
    "meta-4-shards-gqa": ("gqa", "meta", 4),
    "hf-safetensors-2-shards-gqa": ("gqa", "safetensors", 2),
    "hf-bin": ("mha", "bin", 1),
}
# Written here, not taken from vicuna.weights.convert, so that the test checks the converter's tables.
HF_TO_META = {
    "model.embed_tokens": "tok_embeddings", "model.norm": "norm", "lm_head": "output",
    "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1", "mlp.up_proj": "feed_forward.w3",
    "mlp.down_proj": "feed_forward.w2", "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}
# fairscale's ColumnParallelLinear splits dim 0, RowParallelLinear and ParallelEmbedding dim 1
META_SPLIT = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
              "wo": 1, "w2": 1, "tok_embeddings": 1}
DIM, LAYERS = 64, 2


def random_llama(vocab_size: int, spec: dict, seed: int):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=DIM, intermediate_size=spec["ff"],
        num_hidden_layers=LAYERS, num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"], rms_norm_eps=spec["norm_eps"],
        rope_theta=spec["rope_theta"], max_position_embeddings=128, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than init scale, so positions matter in the logits
            p.normal_(std=0.2)
    return model


def interleave_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Hugging Face's q/k rows -> Meta's: per head, HF puts the rotary pairs' first components
    in the first half and the second ones in the second half; Meta interleaves them."""
    head_dim = w.shape[0] // heads
    rows = [h * head_dim + (r // 2) + (r % 2) * (head_dim // 2)
            for h in range(heads) for r in range(head_dim)]
    return w[rows]


def meta_state(model) -> dict[str, torch.Tensor]:
    cfg = model.config
    state = {}
    for name, tensor in model.state_dict().items():
        stem, _, param = name.rpartition(".")
        if stem.startswith("model.layers."):
            _, _, i, inner = stem.split(".", 3)
            meta = f"layers.{i}.{HF_TO_META[inner]}.{param}"
        else:
            meta = f"{HF_TO_META[stem]}.{param}"
        if meta.endswith("attention.wq.weight"):
            tensor = interleave_rows(tensor, cfg.num_attention_heads)
        elif meta.endswith("attention.wk.weight"):
            tensor = interleave_rows(tensor, cfg.num_key_value_heads)
        state[meta] = tensor
    return state


def write_meta(model, spec: dict, model_dir: Path, shards: int, views: bool) -> None:
    """params.json + consolidated.NN.pth; `views` saves each shard's slices as views of the
    whole tensor (torch.save then stores the whole storage with an offset: the strided case)."""
    model_dir.mkdir(parents=True)
    params = {"dim": DIM, "n_layers": LAYERS, "n_heads": spec["heads"],
              "n_kv_heads": spec["kv_heads"], "multiple_of": spec["multiple_of"],
              "norm_eps": spec["norm_eps"], "rope_theta": spec["rope_theta"], "vocab_size": -1}
    if spec["ffn_dim_multiplier"] is not None:
        params["ffn_dim_multiplier"] = spec["ffn_dim_multiplier"]
    (model_dir / "params.json").write_text(json.dumps(params))
    state = meta_state(model)
    for k in range(shards):
        shard = {"rope.freqs": torch.ones(DIM // spec["heads"] // 2)}  # as LLaMA 1 ships it
        for name, tensor in state.items():
            split = META_SPLIT.get(name.rsplit(".", 2)[-2])
            part = tensor if split is None else tensor.chunk(shards, dim=split)[k]
            shard[name] = part if views else part.clone()
        torch.save(shard, model_dir / f"consolidated.{k:02d}.pth")


def write_hf(model, model_dir: Path, layout: str, shards: int) -> None:
    if layout == "safetensors":
        total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        model.save_pretrained(model_dir, max_shard_size=int(total * 0.6))
        assert len(list(model_dir.glob("model-*.safetensors"))) == shards
        assert (model_dir / "model.safetensors.index.json").is_file()
    else:  # transformers 5 saves safetensors only: write what older versions wrote
        assert shards == 1
        model.config.save_pretrained(model_dir)
        torch.save(model.state_dict(), model_dir / "pytorch_model.bin")


@pytest.fixture(scope="module")
def checkpoints(tiny_meta, tmp_path_factory) -> dict[str, dict]:
    """Each case's checkpoint directory and its reference model."""
    import sentencepiece as spm

    vocab_size = spm.SentencePieceProcessor(model_file=str(tiny_meta["tokenizer"])).get_piece_size()
    models = {name: random_llama(vocab_size, spec, seed)
              for seed, (name, spec) in enumerate(MODELS.items())}
    root = tmp_path_factory.mktemp("checkpoints")
    cases = {}
    for case, (model_name, layout, shards) in CASES.items():
        model_dir = root / case
        if layout == "meta":
            write_meta(models[model_name], MODELS[model_name], model_dir, shards,
                       views=shards == 2)
        else:
            write_hf(models[model_name], model_dir, layout, shards)
        cases[case] = {"dir": model_dir, "model": models[model_name],
                       "tokenizer": tiny_meta["tokenizer"]}
    return cases


def convert_llama(*args: str | Path) -> None:
    """scripts/convert_llama.py's main() in this process (a subprocess costs seconds of imports);
    a refusal raises SystemExit with the message that the script prints."""
    spec = importlib.util.spec_from_file_location("convert_llama_script",
                                                  REPO / "scripts" / "convert_llama.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(a) for a in args])


def refusal(model_dir: Path, tokenizer: Path, out: Path, *more: str) -> str:
    """The one-line error of a refused conversion; checks that nothing was written."""
    before = sorted(out.parent.iterdir()) if out.parent.is_dir() else None
    with pytest.raises(SystemExit) as exit_:
        convert_llama("--model_dir", model_dir, "--tokenizer_model", tokenizer, "--output", out,
                      *more)
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ")  # exit status 1
    assert "\n" not in message
    after = sorted(out.parent.iterdir()) if out.parent.is_dir() else None
    assert after == before  # no output, no temporary file
    return message


@pytest.mark.parametrize("case", CASES)
def test_converted_checkpoint_gives_transformers_logits(case, checkpoints, tmp_path):
    c = checkpoints[case]
    out = tmp_path / "out.pt"
    convert_llama("--model_dir", c["dir"], "--tokenizer_model", c["tokenizer"], "--output", out)
    ckpt = checkpoint.load(out)
    cfg = c["model"].config
    assert ckpt["opt"].rotary_interleave is True
    assert ckpt["opt"].transformer_ff == cfg.intermediate_size
    assert ckpt["opt"].num_kv == (0 if cfg.num_key_value_heads == cfg.num_attention_heads
                                  else cfg.num_key_value_heads)
    torch.manual_seed(1)
    tokens = torch.randint(4, cfg.vocab_size, (3, 40))  # from 4: id 3 is OpenNMT-py's pad
    with torch.no_grad():
        expected = c["model"](input_ids=tokens).logits.float()
    got = checkpoint.logits(checkpoint.build_model(ckpt), tokens)
    assert expected.abs().max() > 1.0  # logits big enough for the tolerance to mean something
    assert (expected - got).abs().max().item() <= 1e-4


def test_force_overwrites_an_existing_output(checkpoints, tmp_path):
    c = checkpoints["hf-bin"]
    out = tmp_path / "out.pt"
    out.write_text("old")
    convert_llama("--model_dir", c["dir"], "--tokenizer_model", c["tokenizer"], "--output", out,
                  "--force")
    assert sorted(tmp_path.iterdir()) == [out] and checkpoint.load(out)["opt"].heads == 4


def test_hf_unpermutation_inverts_transformers_permutation():
    """convert_llama_weights_to_hf's permute (for the half-split rotary layout), undone."""
    w = torch.randn(3 * 8, 5)  # 3 heads of 8 rows
    hf = w.view(3, 8 // 2, 2, 5).transpose(1, 2).reshape(24, 5)
    unpermuted = torch.empty_like(hf)  # as the converter reads: HF's rows, in order, into the view
    name_maps.hf_rotary_view(unpermuted, 3).copy_(hf.view(3, 2, 8 // 2, 5))
    assert torch.equal(unpermuted, w)
    assert torch.equal(name_maps.meta_to_hf_rows(w, 3), hf)  # and the export's way back
    assert torch.equal(interleave_rows(hf, 3), w)


def copy_case(checkpoints, case: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoints[case]["dir"], tmp_path / case))


def test_missing_meta_shard_is_refused(checkpoints, tmp_path):
    model_dir = copy_case(checkpoints, "meta-4-shards-gqa", tmp_path)
    (model_dir / "consolidated.01.pth").unlink()
    message = refusal(model_dir, checkpoints["meta-4-shards-gqa"]["tokenizer"], tmp_path / "o.pt")
    assert str(model_dir / "consolidated.01.pth") in message and "missing shard" in message


def test_missing_last_meta_shard_is_refused(checkpoints, tmp_path):
    """Alone, consolidated.00.pth looks like a 1-shard model: its shapes give it away."""
    model_dir = copy_case(checkpoints, "meta-2-shards", tmp_path)
    (model_dir / "consolidated.01.pth").unlink()
    message = refusal(model_dir, checkpoints["meta-2-shards"]["tokenizer"], tmp_path / "o.pt")
    assert "consolidated.00.pth" in message and "params.json implies" in message
    assert "is a shard missing?" in message


def test_missing_hf_shard_is_refused(checkpoints, tmp_path):
    model_dir = copy_case(checkpoints, "hf-safetensors-2-shards-gqa", tmp_path)
    shard = sorted(model_dir.glob("model-*.safetensors"))[1]
    shard.unlink()
    message = refusal(model_dir, checkpoints["meta-2-shards"]["tokenizer"], tmp_path / "o.pt")
    assert str(shard) in message and "model.safetensors.index.json" in message


@pytest.mark.parametrize("case, config, key, value, culprit", [
    ("meta-1-shard", "params.json", "multiple_of", 64, "consolidated.00.pth"),
    ("meta-4-shards-gqa", "params.json", "n_kv_heads", 4, "consolidated.00.pth"),
    ("hf-safetensors-2-shards-gqa", "config.json", "intermediate_size", 192, ".safetensors"),
    ("hf-bin", "config.json", "num_hidden_layers", 3, "config.json"),
])
def test_shapes_that_disagree_with_the_config_are_refused(checkpoints, tmp_path, case, config,
                                                          key, value, culprit):
    model_dir = copy_case(checkpoints, case, tmp_path)
    params = json.loads((model_dir / config).read_text())
    params[key] = value
    (model_dir / config).write_text(json.dumps(params))
    message = refusal(model_dir, checkpoints[case]["tokenizer"], tmp_path / "out" / "o.pt")
    assert culprit in message and f"{config} implies" in message
    assert not (tmp_path / "out").exists()


def test_hf_tokenizer_size_mismatch_is_refused(checkpoints, tmp_path):
    from vicuna import tokenizer

    tokenizer.train(["only a few words here"] * 20, 280, tmp_path / "other.model")
    message = refusal(checkpoints["hf-bin"]["dir"], tmp_path / "other.model", tmp_path / "o.pt")
    assert str(tmp_path / "other.model") in message and "280 pieces" in message


def test_unknown_layout_is_refused(checkpoints, tmp_path):
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    shutil.copy(checkpoints["hf-bin"]["dir"] / "pytorch_model.bin", model_dir / "model.pt")
    message = refusal(model_dir, checkpoints["hf-bin"]["tokenizer"], tmp_path / "o.pt")
    assert str(model_dir) in message and "neither params.json" in message


def test_existing_output_is_refused_in_process(checkpoints, tmp_path):
    out = tmp_path / "o.pt"
    out.write_text("keep me")
    message = refusal(checkpoints["hf-bin"]["dir"], checkpoints["hf-bin"]["tokenizer"], out)
    assert str(out) in message and out.read_text() == "keep me"


def test_a_checkpoint_holding_code_is_refused(checkpoints, tmp_path):
    """Checkpoints are pickles: the lazy reader, like torch.load(weights_only=True), builds
    nothing but tensors."""
    model_dir = copy_case(checkpoints, "hf-bin", tmp_path)
    torch.save({"model.norm.weight": torch.ones(DIM), "hook": print},
               model_dir / "pytorch_model.bin")
    message = refusal(model_dir, checkpoints["hf-bin"]["tokenizer"], tmp_path / "o.pt")
    assert "pytorch_model.bin" in message and "print, not only tensors" in message


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_lazy_reader_reads_what_was_saved(fmt, tmp_path):
    """Shapes, dtypes, offsets into shared storages, strides: as torch / safetensors wrote them."""
    torch.manual_seed(0)
    base = torch.randn(6, 10).to(torch.bfloat16)
    state = {"plain": torch.randn(3, 4).half(), "bf16": base, "rows": base[2:5],
             "cols": base[:, 3:7], "transposed": base.t(), "vector": torch.randn(7)}
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pth")
    if fmt == "safetensors":
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file({k: v.contiguous().clone() for k, v in state.items()}, path)
    else:
        torch.save(state, path, _use_new_zipfile_serialization=fmt == "zip")
    index = convert.index_file(path)
    assert sorted(index) == sorted(state)
    bounce = torch.empty(64, dtype=torch.uint8)  # smaller than most: several blocks per tensor
    for name, tensor in state.items():
        assert index[name].shape == tuple(tensor.shape) and index[name].dtype == tensor.dtype
        out = torch.zeros_like(tensor)
        index[name].read_into(out, bounce)
        assert torch.equal(out, tensor), name
        # into a strided destination (a shard's slice of a joined tensor)
        if tensor.dim() == 2:
            wide = torch.zeros(tensor.shape[0], tensor.shape[1] + 3, dtype=tensor.dtype)
            index[name].read_into(wide.narrow(1, 2, tensor.shape[1]), bounce)
            assert torch.equal(wide[:, 2:-1], tensor), name


# --------------------------------------------------------------------------------------------
# The CTranslate2 release against transformers: the checkpoint's rotary base carried over

def ct2_logprobs(release: Path, vocab: list[str], tokens: torch.Tensor) -> torch.Tensor:
    """CTranslate2's log-probability of each next token of each row (score_batch)."""
    import ctranslate2

    generator = ctranslate2.Generator(str(release), device="cpu", intra_threads=1)
    rows = [[vocab[i] for i in row] for row in tokens.tolist()]
    return torch.tensor([r.log_probs for r in generator.score_batch(rows)])


def hf_logprobs(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=tokens).logits.float(), dim=-1)
    return logp[:, :-1].gather(2, tokens[:, 1:, None])[..., 0]


def test_the_ct2_release_runs_the_checkpoints_rotary_base(checkpoints, tmp_path):
    """Grouped-query attention and rope theta 500,000 (Llama 3's; Code Llama's 1,000,000 alike):
    the release is transformers' model within 1e-3 on a 41-token prompt. CTranslate2's own
    converter, which passes no rotary base, is off by more: the test can tell."""
    from ctranslate2.converters import OpenNMTPyConverter

    c = checkpoints["meta-4-shards-gqa"]
    onmt = tmp_path / "gqa.pt"
    convert_llama("--model_dir", c["dir"], "--tokenizer_model", c["tokenizer"], "--output", onmt)
    assert checkpoint.load(onmt)["opt"].rotary_theta == 500000
    release = tmp_path / "gqa_ct2"
    result = run_script("release_model.py", "--model", str(onmt), "--output", str(release),
                        "--quantization", "float32")
    assert "rotary base 500000" in result.stdout
    torch.manual_seed(2)
    tokens = torch.randint(4, c["model"].config.vocab_size, (2, 41))
    tokens[:, 0] = 1  # <s>
    vocab = checkpoint.load(onmt)["vocab"]["src"]
    expected = hf_logprobs(c["model"], tokens)
    assert (ct2_logprobs(release, vocab, tokens) - expected).abs().max().item() <= 1e-3
    OpenNMTPyConverter(str(onmt)).convert(str(tmp_path / "theirs"), quantization="float32")
    assert (ct2_logprobs(tmp_path / "theirs", vocab, tokens) - expected).abs().max().item() > 1e-3


def test_an_option_the_ct2_converter_would_drop_is_refused_by_name(tiny_meta, tmp_path):
    """Through the script once (one line, nothing written), then each option the converter
    drops, at a value that changes the model, in process."""
    ckpt = checkpoint.load(tiny_meta["onmt"])
    ckpt["opt"].parallel_residual = True
    model = tmp_path / "other.pt"
    torch.save(ckpt, model)
    result = run_script("release_model.py", "--model", str(model), "--output",
                        str(tmp_path / "release"), check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {model}: parallel_residual True: CTranslate2's OpenNMT-py converter drops "
        f"this option, and the release would be another model")
    assert not (tmp_path / "release").exists()
    from vicuna.weights import ct2_release

    for option, value in (("rotary_dim", 8), ("num_experts", 4), ("shared_layer_norm", True)):
        opt = copy.deepcopy(checkpoint.load(tiny_meta["onmt"])["opt"])
        ct2_release.check_options(opt, "m.pt")  # as converted: nothing dropped that matters
        setattr(opt, option, value)
        with pytest.raises(ValueError, match=f"^m.pt: {option} {value!r}: CTranslate2's"):
            ct2_release.check_options(opt, "m.pt")
