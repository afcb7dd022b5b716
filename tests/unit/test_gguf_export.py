"""release_model.py --format gguf, checked by llama.cpp and transformers themselves: the GGUF's
logits computed by llama.cpp (llama-cpp-python) are transformers' LlamaForCausalLM's on the
model the checkpoint was converted from (multi-head attention; grouped-query attention with a
rotary base of 500000), llama.cpp tokenizes as sentencepiece does, the file's chat template
(rendered by jinja2, as llama.cpp's server renders it) and the Modelfile's Ollama template
(rendered by this file's small Go-template renderer) give vicuna.serve.chat.build_prompt's
prompt. The metadata and tensor names are read back with gguf-py's reader and compared with
gguf-py's own tables, written here rather than taken from the exporter."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LLAMA_TOKENIZER
from test_convert import checkpoints, convert_llama  # noqa: F401 (checkpoints: a fixture)
from test_hf_export import HISTORIES, converted, messages_of, release_model  # noqa: F401

from vicuna import prompt
from vicuna.serve import chat
from vicuna.serve.engines.base import count_tokens

gguf = pytest.importorskip("gguf")

F32_TOLERANCE = 1e-3
F16_TOLERANCE = 5e-3  # float16 weights (11-bit mantissa): measured 1.2e-3 on logits up to ~2


def export(c: dict, out: Path, gguf_type: str) -> Path:
    release_model("--model", c["onmt"], "--output", out, "--format", "gguf",
                  "--gguf_type", gguf_type, "--tokenizer_model", c["tokenizer"])
    return out


def llama_cpp_model(path: Path, **kw):
    pytest.importorskip("llama_cpp")
    from vicuna.weights import llamacpp

    return llamacpp.Model(path, **kw)


# --------------------------------------------------------------------------------------------
# The file, read back by gguf-py


def field(reader, key: str):
    return reader.fields[key].contents()


@pytest.mark.parametrize("name", ["mha", "gqa"])
def test_metadata_and_tensor_names_are_llama_cpps(converted, tmp_path, name):  # noqa: F811
    import sentencepiece as spm

    c = converted[name]
    path = export(c, tmp_path / "m-f32.gguf", "f32")
    cfg = c["reference"].config
    r = gguf.GGUFReader(path)
    assert field(r, "general.architecture") == "llama"
    expected = {
        "llama.embedding_length": cfg.hidden_size,
        "llama.block_count": cfg.num_hidden_layers,
        "llama.feed_forward_length": cfg.intermediate_size,
        "llama.attention.head_count": cfg.num_attention_heads,
        "llama.attention.head_count_kv": cfg.num_key_value_heads,
        "llama.rope.dimension_count": cfg.hidden_size // cfg.num_attention_heads,
        "llama.context_length": 2048,
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.padding_token_id": 3,
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.add_bos_token": True,
        "tokenizer.chat_template": prompt.chat_template(),
    }
    assert {k: field(r, k) for k in expected} == expected
    rope = cfg.rope_parameters["rope_theta"] if hasattr(cfg, "rope_parameters") \
        else cfg.rope_theta
    assert field(r, "llama.rope.freq_base") == pytest.approx(rope)
    assert field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg.rms_norm_eps)
    sp = spm.SentencePieceProcessor(model_file=str(c["tokenizer"]))
    assert field(r, "tokenizer.ggml.tokens") == [sp.id_to_piece(i)
                                                 for i in range(sp.get_piece_size())]
    types = field(r, "tokenizer.ggml.token_type")
    assert types[:3] == [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    assert types.count(gguf.TokenType.BYTE) == 256 and types[3] == gguf.TokenType.BYTE
    assert field(r, "tokenizer.ggml.scores")[300] == pytest.approx(sp.get_score(300))
    # the names gguf-py's own tables give the llama architecture's tensors
    t, names = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES
    want = {names[t.TOKEN_EMBD], names[t.OUTPUT_NORM], names[t.OUTPUT]} | {
        names[k].format(bid=i) for i in range(cfg.num_hidden_layers)
        for k in (t.ATTN_Q, t.ATTN_K, t.ATTN_V, t.ATTN_OUT, t.ATTN_NORM, t.FFN_GATE, t.FFN_UP,
                  t.FFN_DOWN, t.FFN_NORM)}
    assert {x.name for x in r.tensors} == {f"{n}.weight" for n in want}
    # F32: transformers' tensors exactly (q and k in the interleaved rotary layout llama.cpp
    # rotates: Hugging Face's rows are un-permuted, as llama.cpp's converter does)
    tensors = {x.name: np.array(x.data) for x in r.tensors}
    hf = c["reference"].state_dict()
    assert np.array_equal(tensors["blk.1.ffn_down.weight"],
                          hf["model.layers.1.mlp.down_proj.weight"].numpy())
    k = hf["model.layers.0.self_attn.k_proj.weight"].numpy()
    heads, head_dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    interleaved = k.reshape(heads, 2, head_dim // 2, -1).swapaxes(1, 2).reshape(k.shape)
    assert np.array_equal(tensors["blk.0.attn_k.weight"], interleaved)
    assert not np.array_equal(interleaved, k)


def test_types_as_asked(converted, tmp_path):  # noqa: F811
    c = converted["mha"]
    kinds = {}
    for kind in ("f16", "q8_0"):
        r = gguf.GGUFReader(export(c, tmp_path / f"m-{kind}.gguf", kind))
        kinds[kind] = {x.name: x.tensor_type.name for x in r.tensors}
    assert kinds["f16"]["blk.0.attn_q.weight"] == "F16"
    assert kinds["f16"]["blk.0.attn_norm.weight"] == "F32"  # norms stay F32, as llama.cpp's
    assert kinds["q8_0"]["blk.0.attn_q.weight"] == "Q8_0"
    # rows of 176 (the FFN width) are not whole 32-value blocks: F16, as llama.cpp's converter
    assert kinds["q8_0"]["blk.0.ffn_down.weight"] == "F16"
    assert kinds["q8_0"]["blk.0.ffn_up.weight"] == "Q8_0"  # rows of 64
    sizes = [(tmp_path / f"m-{kind}.gguf").stat().st_size for kind in ("f16", "q8_0")]
    assert sizes[1] < sizes[0]


def test_refusals_name_the_option_and_write_nothing(converted, tmp_path):  # noqa: F811
    c = converted["mha"]
    out = tmp_path / "out.gguf"
    with pytest.raises(SystemExit) as e:
        release_model("--model", c["onmt"], "--output", out, "--format", "gguf")
    assert e.value.code.startswith("error: --tokenizer_model") and "gguf" in e.value.code
    other = tmp_path / "other.model"
    from vicuna import tokenizer
    tokenizer.train(["only a few words here"] * 20, 280, other)
    with pytest.raises(SystemExit) as e:
        release_model("--model", c["onmt"], "--output", out, "--format", "gguf",
                      "--tokenizer_model", other)
    assert str(other) in e.value.code and "\n" not in e.value.code
    assert sorted(tmp_path.iterdir()) == [other]


def test_a_normalizing_tokenizer_is_refused(tmp_path):
    import sentencepiece as spm

    from vicuna.weights.gguf_export import token_vocabulary

    path = tmp_path / "nfkc.model"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["some words to learn from"] * 50),
                                   model_prefix=str(path.with_suffix("")), vocab_size=40,
                                   model_type="bpe", minloglevel=2)
    with pytest.raises(ValueError, match="nmt_nfkc.*llama.cpp"):
        token_vocabulary(path)


# --------------------------------------------------------------------------------------------
# llama.cpp's logits against transformers'


@pytest.mark.parametrize("name", ["mha", "gqa"])
@pytest.mark.parametrize("kind", ["f32", "f16"])
def test_llama_cpp_logits_are_transformers(converted, tmp_path, name, kind):  # noqa: F811
    c = converted[name]
    path = export(c, tmp_path / f"m-{kind}.gguf", kind)
    tolerance = F32_TOLERANCE if kind == "f32" else F16_TOLERANCE
    vocab = c["reference"].config.vocab_size
    torch.manual_seed(3)
    with llama_cpp_model(path, n_ctx=128) as model:
        worst = 0.0
        for length in (1, 7, 40, 100):
            tokens = [1, *torch.randint(4, vocab, (length - 1,)).tolist()]
            with torch.no_grad():
                expected = c["reference"](input_ids=torch.tensor([tokens])).logits[0].numpy()
            got = model.logits(tokens)
            assert np.abs(expected).max() > 1.0  # large enough for the tolerance to mean anything
            if length > 1:  # and positions matter: the rotary layout and base are checked
                assert np.abs(expected[1:] - expected[:-1]).max() > 10 * tolerance
            worst = max(worst, float(np.abs(got - expected).max()))
        print(f"{name} {kind}: largest difference {worst:.2e}")
        assert worst <= tolerance


def test_q8_0_and_q4_k_m_load_and_stay_close(converted, tmp_path):  # noqa: F811
    c = converted["gqa"]
    torch.manual_seed(4)
    tokens = [1, *torch.randint(4, c["reference"].config.vocab_size, (30,)).tolist()]
    with torch.no_grad():
        expected = c["reference"](input_ids=torch.tensor([tokens])).logits[0].numpy()
    for kind in ("q8_0", "q4_k_m"):
        path = export(c, tmp_path / f"m-{kind}.gguf", kind)
        assert field(gguf.GGUFReader(path), "general.file_type") == \
            {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M}[kind]
        assert not list(tmp_path.glob("*.f16"))  # llama.cpp's source file is gone
        with llama_cpp_model(path, n_ctx=64) as model:
            got = model.logits(tokens)
        diff = float(np.abs(got - expected).max())
        print(f"gqa {kind}: largest difference {diff:.2e} (logits up to "
              f"{np.abs(expected).max():.1f})")
        assert np.isfinite(got).all()
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.9


# --------------------------------------------------------------------------------------------
# llama.cpp's tokenizer and the chat template


TEXTS = {
    "alpaca": prompt.alpaca("Repeat these words.", "cat dog  bird\n\tfish 42", ""),
    "conversation": prompt.conversation([("What is the first word?\nbird milk", "bird"),
                                         ("Reverse: a b c", "c b a")], "Count: é ü 漢字 🙂"),
}


def vocab_only_gguf(tokenizer_model: Path, path: Path) -> Path:
    """A GGUF with the exporter's metadata for `tokenizer_model` and no tensors (llama.cpp
    loads its vocabulary alone)."""
    import sentencepiece as spm

    from vicuna.weights.gguf_export import add_metadata, token_vocabulary
    from vicuna.weights.shape import LlamaShape

    size = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).get_piece_size()
    shape = LlamaShape(dim=64, n_layers=1, n_heads=4, kv_heads=4, hidden_dim=128,
                       vocab_size=size, norm_eps=1e-5, rope_theta=10000.0)
    writer = gguf.GGUFWriter(path, "llama")
    add_metadata(writer, shape, token_vocabulary(tokenizer_model), 2048, "vocab",
                 gguf.LlamaFileType.ALL_F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


TOKENIZERS = {"tiny": None, "llama": LLAMA_TOKENIZER}


@pytest.mark.parametrize("which", TOKENIZERS)
@pytest.mark.parametrize("text", TEXTS)
def test_llama_cpp_tokenizes_as_sentencepiece(tiny_meta, tmp_path, which, text):
    import sentencepiece as spm

    tokenizer_model = TOKENIZERS[which] or tiny_meta["tokenizer"]
    if not Path(tokenizer_model).is_file():
        pytest.skip("real LLaMA tokenizer fixture absent")
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    path = vocab_only_gguf(tokenizer_model, tmp_path / "vocab.gguf")
    with llama_cpp_model(path, vocab_only=True) as model:
        ids = model.tokenize(TEXTS[text])
    assert ids == [1, *sp.encode(TEXTS[text])]
    assert any(sp.is_byte(i) for i in ids)  # byte fallback is exercised ("\n" at least)


@pytest.mark.parametrize("rounds", HISTORIES)
def test_the_files_chat_template_gives_the_chatbots_prompt(converted, tiny_meta, tmp_path,  # noqa: F811
                                                           rounds):
    """The template read back from the file, rendered by jinja2 as llama.cpp's server renders
    a Jinja template: <s> + build_prompt's text; and llama.cpp tokenizes that text (its <s>
    parsed as the token) as the engines do."""
    import jinja2
    import sentencepiece as spm

    c = converted["mha"]
    path = export(c, tmp_path / "m-f16.gguf", "f16")
    template = field(gguf.GGUFReader(path), "tokenizer.chat_template")
    sp = spm.SentencePieceProcessor(model_file=str(c["tokenizer"]))
    history, message = HISTORIES[rounds], "Count the words.\nsun moon star"
    text, dropped = chat.build_prompt(history, message, lambda t: count_tokens(sp, t), 512, 64)
    assert dropped == 0

    def raise_exception(message):
        raise ValueError(message)

    env = jinja2.Environment()
    rendered = env.from_string(template).render(
        messages=messages_of(history, message), add_generation_prompt=True, bos_token="<s>",
        raise_exception=raise_exception)
    assert rendered == "<s>" + text
    with llama_cpp_model(path, vocab_only=True) as model:
        assert model.tokenize(rendered, add_special=False, parse_special=True) == \
            [1, *sp.encode(text)]


# --------------------------------------------------------------------------------------------
# The Ollama Modelfile


GO_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


def render_go(template: str, data: dict) -> str:
    """The subset of Go's text/template that the Modelfile's TEMPLATE uses: text, `range
    .Messages`, `if eq .Role "..."` / `else if eq .Role "..."` / `else`, `end`, `.Content`.
    Anything else fails, so the template cannot drift outside what this checks."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    for m in GO_ACTION.finditer(template):
        tokens.append(("text", template[pos:m.start()]))
        tokens.append(("action", m.group(1)))
        pos = m.end()
    tokens.append(("text", template[pos:]))

    def block(i: int, scope: dict, out: list[str] | None) -> tuple[int, str]:
        """Render from token i until an `end` or `else` (returned with the index after it)."""
        while i < len(tokens):
            kind, value = tokens[i]
            i += 1
            if kind == "text":
                if out is not None:
                    out.append(value)
            elif value == "end" or value.startswith("else"):
                return i, value
            elif value == "range .Messages":
                start = i
                items = scope["Messages"] if out is not None else []
                for item in items:
                    i, stop = block(start, {**scope, **item}, out)
                    assert stop == "end"
                if not items:
                    i, stop = block(start, scope, None)
                    assert stop == "end"
            elif m := re.fullmatch(r'if eq \.(\w+) "([^"]*)"', value):
                taken = out is not None and scope[m.group(1)] == m.group(2)
                i, stop = block(i, scope, out if taken else None)
                done = taken
                while stop != "end":
                    if m2 := re.fullmatch(r'else if eq \.(\w+) "([^"]*)"', stop):
                        now = out is not None and not done and scope[m2.group(1)] == m2.group(2)
                    else:
                        assert stop == "else", stop
                        now = out is not None and not done
                    i, stop = block(i, scope, out if now else None)
                    done = done or now
            elif m := re.fullmatch(r"\.(\w+)", value):
                if out is not None:
                    out.append(scope[m.group(1)])
            else:
                raise ValueError(f"not in the subset rendered here: {{{{ {value} }}}}")
        return i, "eof"

    out: list[str] = []
    i, stop = block(0, data, out)
    assert stop == "eof"
    return "".join(out)


def test_the_go_renderer_renders_go_templates():
    t = '{{ range .Messages }}[{{ if eq .Role "a" }}A{{ .Content }}{{ else if eq .Role "b" }}' \
        'B{{ else }}C{{ end }}]{{ end }}!'
    msgs = [{"Role": "a", "Content": "1"}, {"Role": "b", "Content": "2"},
            {"Role": "c", "Content": "3"}]
    assert render_go(t, {"Messages": msgs}) == "[A1][B][C]!"
    with pytest.raises(ValueError):
        render_go("{{ .Prompt | upper }}", {})


def parse_modelfile(text: str) -> dict:
    """Commands of a Modelfile as Ollama reads them: an argument is a word, "..." (which may
    hold newlines) or \"\"\"...\"\"\"; PARAMETER repeats."""
    arg = r'"""(.*?)"""|"(.*?)"|(\S+)'
    found: dict = {"PARAMETER": []}
    for m in re.finditer(r"^(FROM|TEMPLATE|PARAMETER)\s+(?:(\w+)\s+)?(?:" + arg + ")", text,
                         re.M | re.S):
        command, key = m.group(1), m.group(2)
        value = next(g for g in m.groups()[2:] if g is not None)
        if command == "PARAMETER":
            found["PARAMETER"].append((key, value))
        elif command == "TEMPLATE" and key:  # a bare word after TEMPLATE: not our form
            raise AssertionError(text)
        else:
            found[command] = value
    return found


@pytest.fixture(scope="module")
def modelfile(converted, tiny_options, tmp_path_factory) -> dict:  # noqa: F811
    from helpers import run_script

    root = tmp_path_factory.mktemp("modelfile")
    c = converted["mha"]
    gguf_path = export(c, root / "m-q8_0.gguf", "q8_0")
    run_script("write_modelfile.py", "--gguf", str(gguf_path), "--options",
               str(tiny_options["py"]), "--output", str(root / "m.Modelfile"))
    return {"parsed": parse_modelfile((root / "m.Modelfile").read_text()), "root": root,
            "tokenizer": c["tokenizer"], "options": tiny_options["py"]}


@pytest.mark.parametrize("rounds", HISTORIES)
def test_the_modelfile_template_gives_the_chatbots_prompt(modelfile, rounds):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(modelfile["tokenizer"]))
    history, message = HISTORIES[rounds], "Count the words.\nsun moon star"
    text, _ = chat.build_prompt(history, message, lambda t: count_tokens(sp, t), 512, 64)
    messages = [{"Role": m["role"], "Content": m["content"]}
                for m in messages_of(history, message)]
    assert render_go(modelfile["parsed"]["TEMPLATE"], {"Messages": messages}) == text


def test_the_modelfile_names_the_gguf_the_stop_and_the_decoding(modelfile):
    import yaml

    parsed, opts = modelfile["parsed"], yaml.safe_load(modelfile["options"].read_text())
    assert parsed["FROM"] == "./m-q8_0.gguf" and (modelfile["root"] / "m-q8_0.gguf").is_file()
    params = dict(parsed["PARAMETER"])
    assert params["stop"] == "\n\n### Instruction:"
    assert int(params["top_k"]) == opts["random_sampling_topk"] == 1  # greedy in both
    assert float(params["temperature"]) == opts["random_sampling_temp"]
    assert int(params["num_predict"]) == opts["max_length"]
    assert float(params["top_p"]) == (opts["random_sampling_topp"] or 1.0)
