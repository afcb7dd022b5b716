"""release_model.py --format huggingface / peft, checked by transformers and peft themselves: the
export of a converted random LLaMA (multi-head, and grouped-query attention) gives OpenNMT-py's
logits, its chat template gives the workflow's prompts, a PEFT adapter on the exported base gives
the merged model's logits, and the export converted back gives the checkpoint's tensors."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import REPO
from test_convert import checkpoints, convert_llama  # noqa: F401 (checkpoints: a fixture)

from vicuna import prompt
from vicuna.serve import chat
from vicuna.serve.engines.base import count_tokens, prompt_pieces
from vicuna.weights import checkpoint, lora

transformers = pytest.importorskip("transformers")

# test_convert's cases: Meta's layout with multi-head attention, and with grouped-query
# attention (8 heads, 2 kv heads) in 4 model-parallel shards
CASES = {"mha": "meta-1-shard", "gqa": "meta-4-shards-gqa"}


def release_model(*args: str | Path) -> None:
    """scripts/release_model.py's main() in this process; a refusal raises SystemExit."""
    spec = importlib.util.spec_from_file_location("release_model_script",
                                                  REPO / "scripts" / "release_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(a) for a in args])


@pytest.fixture(scope="module")
def converted(checkpoints, tmp_path_factory) -> dict[str, dict]:  # noqa: F811
    """Each case converted to OpenNMT-py (converted["mha"]["onmt"]) with its tokenizer."""
    root = tmp_path_factory.mktemp("converted")
    out = {}
    for name, case in CASES.items():
        c = checkpoints[case]
        convert_llama("--model_dir", c["dir"], "--tokenizer_model", c["tokenizer"],
                      "--output", root / f"{name}.pt")
        out[name] = {"onmt": root / f"{name}.pt", "tokenizer": c["tokenizer"],
                     "reference": c["model"]}
    return out


def export(onmt: Path, tokenizer: Path, out: Path, *more: str) -> Path:
    release_model("--model", onmt, "--output", out, "--format", "huggingface",
                  "--tokenizer_model", tokenizer, *more)
    return out


def tokens_of(vocab_size: int, seed: int = 1) -> torch.Tensor:
    # from id 4: id 3 is OpenNMT-py's pad (<blank>), which its decoder masks out
    torch.manual_seed(seed)
    return torch.randint(4, vocab_size, (3, 40))


def hf_logits(model_dir: Path, tokens: torch.Tensor) -> torch.Tensor:
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(input_ids=tokens).logits.float()


@pytest.mark.parametrize("name", CASES)
def test_transformers_loads_the_export_with_opennmt_logits(converted, tmp_path, name):
    c = converted[name]
    out = export(c["onmt"], c["tokenizer"], tmp_path / "hf", "--dtype", "float32")
    ck = checkpoint.load(c["onmt"])
    config = json.loads((out / "config.json").read_text())
    assert config["num_key_value_heads"] == (ck["opt"].num_kv or ck["opt"].heads)
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    tokens = tokens_of(len(ck["vocab"]["src"]))
    expected = checkpoint.logits(checkpoint.build_model(ck), tokens)
    got = hf_logits(out, tokens)
    assert expected.abs().max() > 1.0  # logits big enough for the tolerance to mean something
    assert (expected - got).abs().max().item() <= 1e-4
    # and the model the checkpoint was made from (transformers' own, before any conversion)
    with torch.no_grad():
        original = c["reference"](input_ids=tokens).logits.float()
    assert (original - got).abs().max().item() <= 1e-4


def header(path: Path) -> tuple[int, dict]:
    """A safetensors file's header length and header."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return n, json.loads(raw[8:8 + n])


def test_large_exports_are_sharded_with_an_index(converted, tmp_path):
    c = converted["gqa"]
    out = export(c["onmt"], c["tokenizer"], tmp_path / "hf", "--dtype", "float32",
                 "--max_shard_mb", "0.2")
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(shards) >= 3 and not (out / "model.safetensors").exists()
    for shard in shards:  # at most 0.2 MB of tensors each, or one larger tensor alone
        n, tensors = header(shard)
        data = shard.stat().st_size - 8 - n
        assert data <= 0.2e6 or len(tensors) == 2, (shard.name, data)  # + __metadata__
        assert {k for k, v in index["weight_map"].items() if v == shard.name} == \
            set(tensors) - {"__metadata__"}
    assert index["metadata"]["total_size"] == sum(
        shard.stat().st_size - 8 - header(shard)[0] for shard in shards)
    ck = checkpoint.load(c["onmt"])
    tokens = tokens_of(len(ck["vocab"]["src"]))
    expected = checkpoint.logits(checkpoint.build_model(ck), tokens)
    assert (hf_logits(out, tokens) - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_precision_asked_is_written(converted, tmp_path, dtype):
    from safetensors.torch import load_file

    c = converted["mha"]
    out = export(c["onmt"], c["tokenizer"], tmp_path / "hf", "--dtype", dtype)
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype
    weights = load_file(out / "model.safetensors")
    ck = checkpoint.load(c["onmt"])
    assert {t.dtype for t in weights.values()} == {getattr(torch, dtype)}
    emb = ck["model"]["decoder.embeddings.make_embedding.emb_luts.0.weight"]
    assert torch.equal(weights["model.embed_tokens.weight"], emb.to(getattr(torch, dtype)))
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == getattr(torch, dtype)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_export_converts_back_to_the_same_tensors(converted, tmp_path, name, dtype):
    """Round trip: convert_llama.py reads the export (Hugging Face's layout) and gives the
    checkpoint's tensors, bit for bit (a float16 checkpoint exported in float16)."""
    c = converted[name]
    onmt = c["onmt"]
    if dtype == "float16":
        ck = checkpoint.load(onmt)
        ck["model"] = {k: v.half() for k, v in ck["model"].items()}
        ck["generator"] = {k: v.half() for k, v in ck["generator"].items()}
        onmt = tmp_path / "fp16.pt"
        torch.save(ck, onmt)
    out = export(onmt, c["tokenizer"], tmp_path / "hf", "--dtype", dtype, "--max_shard_mb", "0.2")
    convert_llama("--model_dir", out, "--tokenizer_model", c["tokenizer"],
                  "--output", tmp_path / "back.pt")
    before, after = checkpoint.load(onmt), checkpoint.load(tmp_path / "back.pt")
    assert before["model"].keys() == after["model"].keys()
    for key, tensor in before["model"].items():
        assert after["model"][key].dtype == tensor.dtype and torch.equal(after["model"][key],
                                                                        tensor), key
    assert torch.equal(after["generator"]["weight"], before["generator"]["weight"])
    assert after["vocab"] == before["vocab"]
    for key in ("heads", "num_kv", "hidden_size", "transformer_ff", "dec_layers", "norm_eps",
                "rotary_theta", "rotary_interleave"):
        assert getattr(after["opt"], key) == getattr(before["opt"], key), key


# --------------------------------------------------------------------------------------------
# The chat template


HISTORIES = {
    1: [],
    2: [("Repeat these words.\ncat dog", "cat dog")],
    3: [("What is the first word?\nbird milk", "bird"), ("Reverse: a b c", "c b a")],
}


def messages_of(history: list[tuple[str, str]], message: str) -> list[dict[str, str]]:
    turns = [m for h, a in history for m in ({"role": "user", "content": h},
                                            {"role": "assistant", "content": a})]
    return [*turns, {"role": "user", "content": message}]


@pytest.fixture(scope="module")
def exported_tokenizer(converted, tmp_path_factory):
    c = converted["mha"]
    out = export(c["onmt"], c["tokenizer"], tmp_path_factory.mktemp("tok") / "hf")
    return transformers.AutoTokenizer.from_pretrained(out), c["tokenizer"]


@pytest.mark.parametrize("rounds", HISTORIES)
def test_the_chat_template_gives_the_chatbots_prompt(exported_tokenizer, rounds):
    """<s> + vicuna.serve.chat.build_prompt's text (the chatbot's and the API's prompt), and the tokens
    the workflow's engines give the model for it."""
    import sentencepiece as spm

    tok, tokenizer_model = exported_tokenizer
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    history, message = HISTORIES[rounds], "Count the words.\nsun moon star"
    text, dropped = chat.build_prompt(history, message, lambda t: count_tokens(sp, t), 512,
                                      64)
    assert dropped == 0 and text.count("### Instruction:") == rounds
    messages = messages_of(history, message)
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == tok.bos_token + text
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                  return_dict=True)["input_ids"]
    assert ids == [sp.piece_to_id(p) for p in prompt_pieces(sp, text)]
    assert tok(text).input_ids == ids  # a plain text gets its <s> from add_bos_token


@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_the_chat_template_is_the_conversation_layout(exported_tokenizer, rounds):
    """The exported template renders <s> + prompt.conversation: complete rounds (the training
    layout), and an open round with add_generation_prompt (the chatbot's prompt)."""
    tok, _ = exported_tokenizer
    history = [*HISTORIES[3], ("Count the words.\nsun moon star", "3")][:rounds]
    turns = messages_of(history, "x")[:-1]
    rendered = tok.apply_chat_template(turns, tokenize=False)
    assert rendered == tok.bos_token + prompt.conversation(history)
    history, message = history[:-1], history[-1][0]
    rendered = tok.apply_chat_template(messages_of(history, message), add_generation_prompt=True,
                                       tokenize=False)
    assert rendered == tok.bos_token + prompt.conversation(history, message)


@pytest.mark.parametrize("messages", [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi again"}],
])
def test_the_chat_template_refuses_what_the_model_never_saw(exported_tokenizer, messages):
    tok, _ = exported_tokenizer
    with pytest.raises(Exception, match="system message|alternate"):
        tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# --------------------------------------------------------------------------------------------
# The PEFT adapter


def lora_checkpoint(base: dict, rank: int = 4, alpha: float = 16.0, seed: int = 2) -> dict:
    """A LoRA step checkpoint of the four attention layers with random A and B (B nonzero, as
    after training), laid out as OpenNMT-py saves one."""
    opt = copy.deepcopy(base["opt"])
    opt.lora_layers = ["linear_values", "linear_query", "linear_keys", "final_linear"]
    opt.lora_rank, opt.lora_alpha, opt.lora_dropout, opt.lora_embedding = rank, alpha, 0.0, False
    gen = torch.Generator().manual_seed(seed)
    model = {}
    for name, weight in base["model"].items():
        stem = name.removesuffix(".weight")
        if stem.rsplit(".", 1)[-1] in opt.lora_layers:
            out_features, in_features = weight.shape
            model[f"{stem}.lora_A"] = torch.randn(rank, in_features, generator=gen) * 0.2
            model[f"{stem}.lora_B"] = torch.randn(out_features, rank, generator=gen) * 0.2
    return {"model": model, "generator": None, "vocab": base["vocab"], "opt": opt,
            "optim": None}


@pytest.mark.parametrize("name", CASES)
def test_peft_loads_the_adapter_on_the_exported_base_with_the_merged_logits(converted,
                                                                          tmp_path, name):
    peft = pytest.importorskip("peft")
    c = converted[name]
    base = checkpoint.load(c["onmt"])
    adapter_ck = lora_checkpoint(base)
    torch.save(adapter_ck, tmp_path / "step.pt")
    torch.save(lora.merge(checkpoint.load(c["onmt"]), adapter_ck), tmp_path / "merged.pt")
    base_hf = export(c["onmt"], c["tokenizer"], tmp_path / "base_HF", "--dtype", "float32")
    release_model("--model", tmp_path / "step.pt", "--output", tmp_path / "adapter",
                  "--format", "peft", "--base_model", base_hf)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_hf) and config["r"] == 4
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]

    tokens = tokens_of(len(base["vocab"]["src"]))
    model = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(base_hf, dtype=torch.float32),
        tmp_path / "adapter").eval()
    with torch.no_grad():
        got = model(input_ids=tokens).logits.float()
    merged = checkpoint.logits(checkpoint.build_model(checkpoint.load(tmp_path / "merged.pt")),
                               tokens)
    unmerged = checkpoint.logits(checkpoint.build_model(checkpoint.load(c["onmt"]),
                                                        checkpoint.load(tmp_path / "step.pt")),
                                 tokens)
    from safetensors.torch import load_file

    loaded = model.state_dict()
    for key, tensor in load_file(tmp_path / "adapter" / "adapter_model.safetensors").items():
        assert torch.equal(loaded[key.replace(".weight", ".default.weight")], tensor), key
    plain = hf_logits(base_hf, tokens)
    assert (merged - plain).abs().max() > 1.0  # the adapter changes the model
    assert (got - merged).abs().max().item() <= 1e-4
    assert (got - unmerged).abs().max().item() <= 1e-4


# --------------------------------------------------------------------------------------------
# Refusals: one line naming the file, nothing written


def refused(*args: str | Path) -> str:
    with pytest.raises(SystemExit) as exit_:
        release_model(*args)
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message
    return message


def test_a_lora_checkpoint_is_no_full_model(converted, tmp_path):
    c = converted["mha"]
    torch.save(lora_checkpoint(checkpoint.load(c["onmt"])), tmp_path / "step.pt")
    message = refused("--model", tmp_path / "step.pt", "--output", tmp_path / "hf",
                      "--format", "huggingface", "--tokenizer_model", c["tokenizer"])
    assert "step.pt" in message and "LoRA step checkpoint" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.pt"]


def test_another_tokenizer_is_refused(converted, tmp_path):
    from vicuna import tokenizer

    tokenizer.train(["only a few words here"] * 20, 280, tmp_path / "other.model")
    message = refused("--model", converted["mha"]["onmt"], "--output", tmp_path / "hf",
                      "--format", "huggingface", "--tokenizer_model", tmp_path / "other.model")
    assert "other.model" in message and "not the tokenizer" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.model"]


def test_an_adapter_for_another_base_is_refused(converted, tmp_path):
    mha, gqa = converted["mha"], converted["gqa"]
    torch.save(lora_checkpoint(checkpoint.load(mha["onmt"])), tmp_path / "step.pt")
    other = export(gqa["onmt"], gqa["tokenizer"], tmp_path / "other_HF")
    message = refused("--model", tmp_path / "step.pt", "--output", tmp_path / "adapter",
                      "--format", "peft", "--base_model", other)
    assert str(other / "config.json") in message and "another base" in message
    assert not (tmp_path / "adapter").exists()


def test_a_directory_of_other_files_is_not_replaced(converted, tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    message = refused("--model", converted["mha"]["onmt"], "--output", tmp_path / "hf",
                      "--format", "huggingface", "--tokenizer_model", converted["mha"]["tokenizer"])
    assert str(tmp_path / "hf") in message
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["notes.txt"]
