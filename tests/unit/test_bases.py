"""The bases people finetune today, each as a small random base of its shape, through the
converter, a LoRA merge and every release, against transformers and peft (implementations
independent of this project's):

- LLaMA 1 (Meta's layout: params.json with vocab_size -1, multi-head attention);
- Llama 2 70B's shape (Meta's layout: vocab_size -1, n_kv_heads, ffn_dim_multiplier 1.3,
  norm_eps 1e-05);
- Code Llama (Meta's layout: rope_theta 1,000,000, and more embedding rows than LLaMA's
  tokenizer has pieces, as Code Llama 7B's 32,016: it goes with its own tokenizer);
- TinyLlama (Hugging Face's LlamaForCausalLM: 32 heads sharing 4 KV heads, scaled down);
- Mistral v0.1 (Hugging Face's MistralForCausalLM) with a window of 16 tokens, shorter than
  the 40-token test sequences; and Mistral v0.2's shape (no window, rope_theta 1e6).

The LoRA is made in Hugging Face's layout and applied by peft (the reference for every
release of the merged model); the project receives it as OpenNMT-py would save it, its q and k
rows put back in Meta's order by this file's own code (test_convert.interleave_rows).

Each check prints its largest difference (`pytest -s` lists them: the issue's table).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import run_script
from test_convert import convert_llama, ct2_logprobs, interleave_rows, meta_state
from test_hf_export import release_model

from vicuna.weights import checkpoint, lora

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

DIM, LAYERS, LENGTH, WINDOW = 64, 2, 40, 16
# arch -> its shape; Meta's layout states multiple_of (and ffn_dim_multiplier), Hugging Face's
# the FFN width (ff). vocab: the model's rows where not the tokenizer's 320.
ARCHS = {
    "llama1-meta": dict(layout="meta", heads=4, kv_heads=4, multiple_of=16, norm_eps=1e-6,
                        rope_theta=10000.0),
    "llama2-70b-meta": dict(layout="meta", heads=8, kv_heads=1, multiple_of=32,
                            ffn_dim_multiplier=1.3, norm_eps=1e-5, rope_theta=10000.0),
    "codellama-meta": dict(layout="meta", heads=4, kv_heads=4, multiple_of=16,
                           ffn_dim_multiplier=1.0, norm_eps=1e-5, rope_theta=1000000.0,
                           vocab=336),
    "tinyllama-hf": dict(layout="hf", heads=8, kv_heads=1, ff=176, norm_eps=1e-5,
                         rope_theta=10000.0, context=2048),
    "mistral-hf": dict(layout="hf", cls="mistral", heads=8, kv_heads=2, ff=224, norm_eps=1e-5,
                       rope_theta=10000.0, context=32768, window=WINDOW),
}
# converted only: Mistral v0.1 in Mistral's own layout (Meta's names, params.json with
# hidden_dim, head_dim and sliding_window); Mistral v0.2 and later (a null window, rotary base
# 1e6), which is a LLaMA
CONVERT_ONLY = {
    "mistral-own-layout": dict(layout="mistral", cls="mistral", heads=8, kv_heads=2, ff=224,
                               norm_eps=1e-5, rope_theta=10000.0, window=WINDOW),
    "mistral-v0.2-hf": dict(layout="hf", cls="mistral", heads=8, kv_heads=2, ff=224,
                            norm_eps=1e-5, rope_theta=1000000.0, context=32768, window=None),
}
LORA_MODULES = {"q_proj": "linear_query", "k_proj": "linear_keys", "v_proj": "linear_values",
                "o_proj": "final_linear"}
CODE_LLAMA_PIECES = ["▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"]  # its infilling tokens
CONVERT_TOLERANCE = HF_TOLERANCE = PEFT_TOLERANCE = 1e-4
CT2_TOLERANCE = GGUF_F32_TOLERANCE = 1e-3
GGUF_F16_TOLERANCE = 5e-3  # float16 weights, as test_gguf_export


def meta_ffn(spec: dict) -> int:
    """Meta's FFN width rule (llama's model.py), written here: 2/3 of 4 * dim, times
    ffn_dim_multiplier, rounded up to a multiple of multiple_of."""
    hidden = int(2 * 4 * DIM / 3)
    if spec.get("ffn_dim_multiplier") is not None:
        hidden = int(spec["ffn_dim_multiplier"] * hidden)
    return spec["multiple_of"] * -(-hidden // spec["multiple_of"])


def random_model(spec: dict, vocab_size: int, seed: int):
    cls = spec.get("cls", "llama")
    kwargs = dict(vocab_size=vocab_size, hidden_size=DIM, num_hidden_layers=LAYERS,
                  intermediate_size=spec.get("ff") or meta_ffn(spec),
                  num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
                  rms_norm_eps=spec["norm_eps"], rope_theta=spec["rope_theta"],
                  max_position_embeddings=spec.get("context", 2048), tie_word_embeddings=False)
    if cls == "mistral":
        config = transformers.MistralConfig(sliding_window=spec["window"], **kwargs)
        model_class = transformers.MistralForCausalLM
    else:
        config = transformers.LlamaConfig(**kwargs)
        model_class = transformers.LlamaForCausalLM
    torch.manual_seed(seed)
    model = model_class(config).float().eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than init scale, so positions matter
            p.normal_(std=0.2)
    return model


def write_meta(model, spec: dict, model_dir: Path) -> None:
    """params.json as Meta's releases write it (vocab_size -1 but Code Llama's, no n_kv_heads
    for multi-head attention), or as Mistral's (mistral-inference's), and consolidated.00.pth."""
    model_dir.mkdir(parents=True)
    if spec["layout"] == "mistral":
        params = {"dim": DIM, "n_layers": LAYERS, "head_dim": DIM // spec["heads"],
                  "hidden_dim": spec["ff"], "n_heads": spec["heads"],
                  "n_kv_heads": spec["kv_heads"], "norm_eps": spec["norm_eps"],
                  "sliding_window": spec["window"], "vocab_size": 320}
        (model_dir / "params.json").write_text(json.dumps(params))
        torch.save(meta_state(model), model_dir / "consolidated.00.pth")
        return
    params = {"dim": DIM, "n_layers": LAYERS, "n_heads": spec["heads"],
              "multiple_of": spec["multiple_of"], "norm_eps": spec["norm_eps"],
              "vocab_size": spec.get("vocab", -1)}
    if spec["kv_heads"] != spec["heads"]:
        params["n_kv_heads"] = spec["kv_heads"]
    for key in ("ffn_dim_multiplier", "rope_theta"):
        if key in spec and (key != "rope_theta" or spec[key] != 10000.0):
            params[key] = spec[key]
    (model_dir / "params.json").write_text(json.dumps(params))
    torch.save(meta_state(model), model_dir / "consolidated.00.pth")


def code_llama_tokenizer(path: Path, texts: list[str]) -> Path:
    """A LLaMA-style tokenizer extended as Code Llama's was: LLaMA's pieces, then user-defined
    ones appended at the end (its infilling tokens), 336 in all."""
    from sentencepiece import sentencepiece_model_pb2

    from vicuna import tokenizer

    size = ARCHS["codellama-meta"]["vocab"]
    tokenizer.train(texts, size - len(CODE_LLAMA_PIECES), path)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    for piece in CODE_LLAMA_PIECES:
        proto.pieces.add(piece=piece, score=0.0,
                         type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    path.write_bytes(proto.SerializeToString())
    return path


def sequences(vocab_size: int, seed: int = 1) -> torch.Tensor:
    """Two rows of <s> + 39 ids (from 4: id 3 is OpenNMT-py's pad)."""
    torch.manual_seed(seed)
    tokens = torch.randint(4, vocab_size, (2, LENGTH))
    tokens[:, 0] = 1
    return tokens


def hf_forward(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=tokens).logits.float()


def with_lora(model, seed: int):
    """peft's LoRA (rank 4, alpha 8) of q, k, v and o on a copy of `model`, random A and B."""
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                             target_modules=list(LORA_MODULES))
    wrapped = peft.get_peft_model(copy.deepcopy(model), config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return wrapped


def onmt_lora(wrapped, spec: dict, base_opt) -> dict:
    """The adapter as an OpenNMT-py LoRA step checkpoint: names from LORA_MODULES, B of q and
    k in Meta's row order."""
    opt = copy.deepcopy(base_opt)
    opt.lora_layers = sorted(set(LORA_MODULES.values()))
    opt.lora_rank, opt.lora_alpha, opt.lora_dropout, opt.lora_embedding = 4, 8, 0.0, False
    tensors = {}
    for name, t in wrapped.state_dict().items():
        if ".lora_" not in name:
            continue
        layer = int(name.split(".layers.")[1].split(".")[0])
        module = next(m for m in LORA_MODULES if f".{m}." in name)
        part = "lora_A" if ".lora_A." in name else "lora_B"
        if part == "lora_B" and module in ("q_proj", "k_proj"):
            t = interleave_rows(t, spec["heads"] if module == "q_proj" else spec["kv_heads"])
        tensors[f"decoder.transformer_layers.{layer}.self_attn.{LORA_MODULES[module]}.{part}"] = \
            t.clone()
    return {"model": tensors, "generator": None, "vocab": None, "opt": opt, "optim": None}


def report(arch: str, step: str, diff: float, tolerance: float) -> None:
    print(f"\n{arch} | {step} | largest difference {diff:.1e} (tolerance {tolerance:g})")
    assert diff <= tolerance, (arch, step, diff)


@pytest.fixture(scope="module")
def tokenizers(tiny_meta, tmp_path_factory) -> dict[int, Path]:
    """Tokenizers by piece count: tiny_meta's (320), and a Code Llama-like one (336)."""
    from vicuna import prompt
    from vicuna.tiny import synthetic

    sets = synthetic.generate(seed=7, n_alpaca=300, n_sharegpt=50, n_heldout=10, n_pretrain=300)
    texts = [prompt.alpaca(**r) for r in sets["alpaca"]] + sets["pretrain"]
    root = tmp_path_factory.mktemp("tokenizers")
    return {320: tiny_meta["tokenizer"], 336: code_llama_tokenizer(root / "code.model", texts)}


@pytest.fixture(scope="module")
def bases(tokenizers, tmp_path_factory) -> dict[str, dict]:
    """Each architecture's base directory, tokenizer, reference model and conversion."""
    root = tmp_path_factory.mktemp("bases")
    out = {}
    for seed, (arch, spec) in enumerate({**ARCHS, **CONVERT_ONLY}.items()):
        vocab = spec.get("vocab", 320)
        model = random_model(spec, vocab, seed)
        base_dir = root / arch
        if spec["layout"] in ("meta", "mistral"):
            write_meta(model, spec, base_dir)
        else:
            model.save_pretrained(base_dir)
        onmt = root / f"{arch}.pt"
        convert_llama("--model_dir", base_dir, "--tokenizer_model", tokenizers[vocab],
                      "--output", onmt)
        out[arch] = {"dir": base_dir, "model": model, "tokenizer": tokenizers[vocab],
                     "onmt": onmt, "spec": spec, "tokens": sequences(vocab, seed)}
    return out


@pytest.fixture(scope="module")
def finetuned(bases, tmp_path_factory) -> dict[str, dict]:
    """Each architecture (but the convert-only ones) with a LoRA: peft's model (the reference),
    the OpenNMT-py step checkpoint, and the merge of it into the converted base."""
    root = tmp_path_factory.mktemp("finetuned")
    out = {}
    for seed, arch in enumerate(ARCHS):
        b = bases[arch]
        wrapped = with_lora(b["model"], seed + 10)
        base = checkpoint.load(b["onmt"])
        step = onmt_lora(wrapped, b["spec"], base["opt"])
        step["vocab"] = base["vocab"]
        torch.save(step, root / f"{arch}_step.pt")
        torch.save(lora.merge(base, step), root / f"{arch}_merged.pt")
        out[arch] = {**b, "peft": wrapped, "step": root / f"{arch}_step.pt",
                     "merged": root / f"{arch}_merged.pt",
                     "reference": hf_forward(wrapped, b["tokens"])}
    return out


# --------------------------------------------------------------------------------------------
# Convert (Meta's and Hugging Face's layouts) and merge: OpenNMT-py's logits


@pytest.mark.parametrize("arch", [*ARCHS, *CONVERT_ONLY])
def test_the_converted_base_is_transformers_model(bases, arch):
    b = bases[arch]
    spec, cfg = b["spec"], b["model"].config
    opt = checkpoint.load(b["onmt"])["opt"]
    assert (opt.heads, opt.num_kv, opt.transformer_ff, opt.norm_eps, opt.rotary_theta) == (
        spec["heads"], 0 if spec["kv_heads"] == spec["heads"] else spec["kv_heads"],
        cfg.intermediate_size, spec["norm_eps"], int(spec["rope_theta"]))
    # OpenNMT-py's band mask counts the positions before a token: Mistral's window - 1
    assert opt.sliding_window == (spec["window"] - 1 if spec.get("window") else 0)
    assert opt.max_position_embeddings == spec.get("context")  # None: params.json says none
    expected = hf_forward(b["model"], b["tokens"])
    got = checkpoint.logits(checkpoint.build_model(checkpoint.load(b["onmt"])), b["tokens"])
    assert expected.abs().max() > 1.0  # logits big enough for the tolerance to mean something
    report(arch, "convert (OpenNMT-py)", (got - expected).abs().max().item(), CONVERT_TOLERANCE)


def test_the_window_matters_in_these_tests(bases):
    """The Mistral base's logits past its window are not those of the same weights without a
    window (so every check past it can tell), and within it they are."""
    b = bases["mistral-hf"]
    windowless = copy.deepcopy(b["model"])
    windowless.config.sliding_window = None
    for module in windowless.modules():
        if hasattr(module, "sliding_window"):
            module.sliding_window = None
    diff = (hf_forward(windowless, b["tokens"]) - hf_forward(b["model"], b["tokens"])).abs()
    assert diff[:, :WINDOW].max() <= 1e-5 and diff[:, WINDOW:].max() > 0.1


@pytest.mark.parametrize("arch", ARCHS)
def test_the_merged_lora_is_peft_model(finetuned, arch):
    f = finetuned[arch]
    got = checkpoint.logits(checkpoint.build_model(checkpoint.load(f["merged"])), f["tokens"])
    without = hf_forward(f["model"], f["tokens"])
    assert (f["reference"] - without).abs().max() > 1.0  # the LoRA changes the model
    report(arch, "merge (OpenNMT-py)", (got - f["reference"]).abs().max().item(),
           CONVERT_TOLERANCE)


# --------------------------------------------------------------------------------------------
# The releases of the merged model


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return logp[:, :-1].gather(2, tokens[:, 1:, None])[..., 0]


@pytest.mark.parametrize("arch", ARCHS)
def test_the_ct2_release_is_peft_model(finetuned, tmp_path, arch):
    """score_batch's log-probabilities over the whole sequence; for the window, CTranslate2's
    own: what it scores (up to the window) and what it generates past it."""
    import ctranslate2

    from vicuna.weights.ct2_release import sliding_window

    f = finetuned[arch]
    release = tmp_path / "ct2"
    release_model("--model", f["merged"], "--output", release, "--quantization", "float32")
    vocab = checkpoint.load(f["merged"])["vocab"]["src"]
    window = f["spec"].get("window")
    assert sliding_window(release) == window
    tokens = f["tokens"][:, :window + 1] if window else f["tokens"]
    expected = logprobs_of(f["reference"][:, :tokens.shape[1]], tokens)
    diff = (ct2_logprobs(release, vocab, tokens) - expected).abs().max().item()
    if window:  # generated from a prompt of the window's length, 24 tokens past it
        generator = ctranslate2.Generator(str(release), device="cpu", intra_threads=1)
        prompt = f["tokens"][0, :window].tolist()
        result = generator.generate_batch([[vocab[i] for i in prompt]], max_length=24,
                                          include_prompt_in_result=False,
                                          return_logits_vocab=True, return_end_token=True)[0]
        ids = [vocab.index(t) for t in result.sequences[0]]
        assert len(prompt) + len(ids) > window + 8
        got = torch.tensor(np.array([np.asarray(x) for x in result.logits[0]]))
        expected = hf_forward(f["peft"], torch.tensor([prompt + ids]))[0, window - 1:-1]
        diff = max(diff, (got - expected).abs().max().item())
    report(arch, "ct2 float32", diff, CT2_TOLERANCE)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_hf_release_is_peft_model(finetuned, tmp_path, arch):
    f = finetuned[arch]
    out = tmp_path / "hf"
    release_model("--model", f["merged"], "--output", out, "--format", "huggingface",
                  "--tokenizer_model", f["tokenizer"], "--dtype", "float32")
    config = json.loads((out / "config.json").read_text())
    window = f["spec"].get("window")
    assert config["architectures"] == ["MistralForCausalLM" if window else "LlamaForCausalLM"]
    assert config.get("sliding_window") == window
    assert config["max_position_embeddings"] == f["spec"].get("context", 2048)
    assert config["rope_theta"] == f["spec"]["rope_theta"]
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    diff = (hf_forward(model, f["tokens"]) - f["reference"]).abs().max().item()
    report(arch, "huggingface float32", diff, HF_TOLERANCE)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_peft_release_is_peft_model(finetuned, tmp_path, arch):
    """The adapter on the base in Hugging Face's layout: the base's own directory, or (Meta's
    layout) the converted base exported, as the workflow's release_hf_base."""
    f = finetuned[arch]
    base = f["dir"]
    if f["spec"]["layout"] == "meta":
        base = tmp_path / "base_HF"
        release_model("--model", f["onmt"], "--output", base, "--format", "huggingface",
                      "--tokenizer_model", f["tokenizer"], "--dtype", "float32")
    release_model("--model", f["step"], "--output", tmp_path / "adapter", "--format", "peft",
                  "--base_model", base)
    model = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        tmp_path / "adapter").eval()
    diff = (hf_forward(model, f["tokens"]) - f["reference"]).abs().max().item()
    report(arch, "peft adapter", diff, PEFT_TOLERANCE)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["f32", "f16"])
def test_the_gguf_release_is_peft_model(finetuned, tmp_path, arch, kind):
    """llama.cpp's logits; with a window, up to it: llama.cpp's `llama` architecture does not
    keep one (past it, its logits are another model's: shown), so the file states it for an
    engine to refuse longer prompts."""
    pytest.importorskip("llama_cpp")
    from vicuna.weights import gguf_export, llamacpp

    f = finetuned[arch]
    path = tmp_path / f"m-{kind}.gguf"
    release_model("--model", f["merged"], "--output", path, "--format", "gguf",
                  "--gguf_type", kind, "--tokenizer_model", f["tokenizer"])
    window = f["spec"].get("window")
    assert gguf_export.sliding_window(path) == window
    tolerance = GGUF_F32_TOLERANCE if kind == "f32" else GGUF_F16_TOLERANCE
    diff = 0.0
    with llamacpp.Model(path, n_ctx=64) as model:
        for row in range(2):
            tokens = f["tokens"][row].tolist()
            got = torch.from_numpy(model.logits(tokens))
            expected = f["reference"][row]
            if window:
                past = (got[window:] - expected[window:]).abs().max().item()
                assert past > 10 * tolerance  # llama.cpp computes the model without a window
                got, expected = got[:window], expected[:window]
            diff = max(diff, (got - expected).abs().max().item())
    report(arch, f"gguf {kind} (llama.cpp)", diff, tolerance)


def test_code_llamas_pieces_in_the_gguf(finetuned, tmp_path):
    """Code Llama's appended pieces are USER_DEFINED in the GGUF, as llama.cpp's converter
    writes them, and text tokenizes as sentencepiece does; but a text holding an infilling
    piece (" <PRE>") is not: sentencepiece matches it whole, llama.cpp spells it out (it takes
    "▁<PRE>" for a control token, matched only as its own text). Vicuna's prompts hold none."""
    pytest.importorskip("llama_cpp")
    import gguf
    import sentencepiece as spm

    from vicuna.weights import llamacpp

    f = finetuned["codellama-meta"]
    path = tmp_path / "code-f16.gguf"
    release_model("--model", f["merged"], "--output", path, "--format", "gguf",
                  "--gguf_type", "f16", "--tokenizer_model", f["tokenizer"])
    sp = spm.SentencePieceProcessor(model_file=str(f["tokenizer"]))
    types = gguf.GGUFReader(path).fields["tokenizer.ggml.token_type"].contents()
    assert [types[sp.piece_to_id(p)] for p in CODE_LLAMA_PIECES] == \
        [gguf.TokenType.USER_DEFINED] * len(CODE_LLAMA_PIECES)
    plain, infilling = "def f(x):\n    return x + 1", "def f(x):\n <PRE> return x <SUF> y"
    assert "▁<PRE>" in sp.encode(infilling, out_type=str)
    with llamacpp.Model(path, vocab_only=True) as model:
        assert model.tokenize(plain) == [1, *sp.encode(plain)]
        for special in (False, True):
            assert model.tokenize(infilling, parse_special=special) != [1, *sp.encode(infilling)]


# --------------------------------------------------------------------------------------------
# The engines and the window: kept where the engine keeps it, refused where it does not


def engine(mode: str, model: Path, tokenizer: Path, max_length: int):
    from vicuna.serve import engines

    inference = {"device": "cpu", "precision": "fp32", "compute_type": "default",
                 "cpu_threads": 1, "batch_size": 4, "beam_size": 1, "max_length": max_length,
                 "random_sampling_topk": 1, "random_sampling_topp": 0.0,
                 "random_sampling_temp": 1.0, "seed": 1}
    return engines.load(mode, engines.options_file(mode, str(model), str(tokenizer), inference),
                        f"{mode} options")


def words(eng, tokens: int) -> str:
    """A prompt text of exactly `tokens` tokens (<s> included) for this engine's tokenizer:
    digits, one piece each (split_digits)."""
    for n in range(1, 200):
        text = "Count: " + "".join(str(i % 10) for i in range(n))
        if eng.count_tokens(text) == tokens:
            return text
    raise AssertionError(f"no text of {tokens} tokens")


def greedy(model, ids: list[int], new: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=new, do_sample=False,
                             eos_token_id=2, pad_token_id=0)
    answer = out[0, len(ids):].tolist()
    return answer[:answer.index(2)] if 2 in answer else answer


def test_the_py_engine_scores_past_the_window_and_refuses_to_generate_past_it(finetuned):
    """OpenNMT-py's whole-sequence pass keeps the window (its log-likelihoods are peft's past
    it); its cached decoding does not (shown: 3.5.1 fails there), so a prompt and answer
    longer than the window are refused, and one that fits is transformers' answer."""
    import sentencepiece as spm

    f = finetuned["mistral-hf"]
    sp = spm.SentencePieceProcessor(model_file=str(f["tokenizer"]))
    eng = engine("py", f["merged"], f["tokenizer"], max_length=6)
    assert eng.window == WINDOW
    got = torch.tensor(eng.logprobs(f["tokens"].tolist()))
    report("mistral-hf", "py engine logprobs", (got - logprobs_of(f["reference"], f["tokens"]))
           .abs().max().item(), CONVERT_TOLERANCE)
    fits = words(eng, WINDOW - 6)
    answer = eng.generate([fits])[0]
    assert answer.text == sp.decode(greedy(f["peft"], eng.prompt_ids(fits), 6))
    with pytest.raises(ValueError, match=f"prompt 0 and max_length 6: {WINDOW + 1} tokens pass "
                                         f"the model's sliding window of {WINDOW}: OpenNMT-py"):
        eng.generate([words(eng, WINDOW - 5)])
    with pytest.raises(RuntimeError, match="must match the size"):  # why: OpenNMT-py itself
        eng._engine().infer_list([words(eng, WINDOW - 5)])


def test_the_ct2_engine_generates_past_the_window_and_refuses_longer_prompts(finetuned,
                                                                           tmp_path):
    """CTranslate2 keeps the window once the prompt is in its cache: an answer past it is
    transformers' (and its logits, test_the_ct2_release_is_peft_model); a prompt longer than
    the window, which it reads otherwise, and a sequence to score past it are refused."""
    import sentencepiece as spm

    f = finetuned["mistral-hf"]
    sp = spm.SentencePieceProcessor(model_file=str(f["tokenizer"]))
    release = tmp_path / "ct2"
    release_model("--model", f["merged"], "--output", release, "--quantization", "float32")
    eng = engine("ct2", release, f["tokenizer"], max_length=24)
    assert eng.window == WINDOW
    prompt = words(eng, WINDOW)
    expected = greedy(f["peft"], eng.prompt_ids(prompt), 24)
    assert len(expected) > 8  # the answer goes past the window
    assert eng.generate([prompt])[0].text == sp.decode(expected)
    for refused in (lambda: eng.generate([words(eng, WINDOW + 1)]),
                    lambda: list(eng.stream(words(eng, WINDOW + 1)))):
        with pytest.raises(ValueError, match=f"{WINDOW + 1} tokens pass the model's sliding "
                                             f"window of {WINDOW}: CTranslate2"):
            refused()
    assert len(eng.logprobs([f["tokens"][0, :WINDOW + 1].tolist()])[0]) == WINDOW
    with pytest.raises(ValueError, match="sequence 0: 39 tokens pass .* score_batch"):
        eng.logprobs([f["tokens"][0].tolist()])


def test_the_gguf_engine_answers_within_the_window_and_refuses_past_it(finetuned, tmp_path):
    """llama.cpp does not keep the window (test_the_gguf_release_is_peft_model): the gguf mode
    answers as transformers where prompt and answer fit in it, and refuses, naming the window,
    a prompt and answer or a sequence to score that pass it."""
    pytest.importorskip("llama_cpp")
    import sentencepiece as spm

    f = finetuned["mistral-hf"]
    sp = spm.SentencePieceProcessor(model_file=str(f["tokenizer"]))
    path = tmp_path / "m-f32.gguf"
    release_model("--model", f["merged"], "--output", path, "--format", "gguf",
                  "--gguf_type", "f32", "--tokenizer_model", f["tokenizer"])
    eng = engine("gguf", path, f["tokenizer"], max_length=6)
    assert eng.window == WINDOW
    fits = words(eng, WINDOW - 6)
    assert eng.generate([fits])[0].text == sp.decode(greedy(f["peft"], eng.prompt_ids(fits), 6))
    too_long = words(eng, WINDOW - 5)
    for refused in (lambda: eng.generate([too_long]), lambda: list(eng.stream(too_long)),
                    lambda: eng.logprobs([f["tokens"][0].tolist()])):
        with pytest.raises(ValueError, match=f"pass the model's sliding window of {WINDOW}: "
                                             f"llama.cpp's llama architecture"):
            refused()
    assert len(eng.logprobs([f["tokens"][0, :WINDOW].tolist()])[0]) == WINDOW - 1
    eng.close()
    # Ollama runs llama.cpp too: the Modelfile's context is the window, not the base's 32
    options = tmp_path / "translate_opts_gguf.yaml"
    options.write_text(yaml.safe_dump(eng.opts))
    run_script("write_modelfile.py", "--gguf", str(path), "--options", str(options),
               "--output", str(tmp_path / "m.Modelfile"))
    assert f"PARAMETER num_ctx {WINDOW}\n" in (tmp_path / "m.Modelfile").read_text()


def test_code_llamas_rows_need_its_own_tokenizer(bases, tokenizers, tmp_path):
    """336 embedding rows (Code Llama 7B's 32,016) with a 320-piece tokenizer (LLaMA's 32,000):
    refused, both sizes named; with its own tokenizer it converts (above)."""
    from test_convert import refusal

    message = refusal(bases["codellama-meta"]["dir"], tokenizers[320], tmp_path / "o.pt")
    assert f"{tokenizers[320]}: the tokenizer has 320 pieces but the model in " in message
    assert "has 336 embeddings: give the model's own tokenizer" in message


def test_an_adapter_for_another_rotary_base_or_window_is_refused(finetuned, bases, tmp_path):
    """The PEFT release checks the base it names is the one the LoRA was trained on, its
    rotary base, norm epsilon and window included: Mistral v0.1's adapter on Mistral v0.2's
    shape (same widths; rotary base 1e6, no window) is another model."""
    with pytest.raises(SystemExit) as e:
        release_model("--model", finetuned["mistral-hf"]["step"], "--output", tmp_path / "a",
                      "--format", "peft", "--base_model", bases["mistral-v0.2-hf"]["dir"])
    assert "config.json: rope_theta is 1000000.0, but" in e.value.code
    assert "was trained on a base with 10000.0: another base" in e.value.code
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("arch", ["llama2-70b-meta", "codellama-meta"])
def test_both_modes_answer_as_transformers(finetuned, tmp_path, arch):
    """The merged model in `py` (OpenNMT-py's cached decoding) and `ct2` (its release): greedy
    answers of 20 tokens are transformers' and peft's, with grouped-query attention (8 heads
    sharing 1) and with rotary base 1e6 (LLaMA 1's shape: tests/unit/test_inference.py; the
    window: the two tests above)."""
    import sentencepiece as spm

    f = finetuned[arch]
    sp = spm.SentencePieceProcessor(model_file=str(f["tokenizer"]))
    release = tmp_path / "ct2"
    release_model("--model", f["merged"], "--output", release, "--quantization", "float32")
    prompt = "Count: 12345 cat dog"
    for mode, model in (("py", f["merged"]), ("ct2", release)):
        eng = engine(mode, model, f["tokenizer"], max_length=20)
        expected = greedy(f["peft"], eng.prompt_ids(prompt), 20)
        assert eng.generate([prompt])[0].text == sp.decode(expected), mode
        eng.close()
