"""The releases a user may publish, one registry entry per kind: which files its Hub folder
holds, what its own files say of the model (shape, weights, chat template), the card's front
matter fields for it, and how to run it. Every fact is read from the release's files, never
from the config: the card describes what is uploaded."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vicuna import prompt, tokenizer
from vicuna.files import gguf_file
from vicuna.publish.run_files import json_object

# Where a card's code says which repository to load: the user's id for it is not known here.
REPO_ID = "OWNER/NAME"
EXAMPLE = "Give three tips for staying healthy."  # the first instruction of Alpaca's data


@dataclass(frozen=True)
class Release:
    """One release, as its files describe it."""
    kind: str
    files: list[Path]  # what its Hub folder holds, beside README.md
    shape: dict[str, Any]  # label -> value, for the card's table
    weights: str  # e.g. "float16", "F16, Q8_0, Q4_K_M", "LoRA rank 8"
    chat_template: str
    template_source: str  # where the template was read, for the card
    bos_token: str = tokenizer.BOS
    root: Path | None = None  # the release directory its files are under (None: loose files)
    notes: dict[str, Any] = field(default_factory=dict)  # what one kind's usage needs


@dataclass(frozen=True)
class Kind:
    title: str  # the card's heading: what the folder is
    library_name: str
    tags: tuple[str, ...]
    read: Callable[[list[Path]], Release]
    usage: Callable[[Release], str]


def _visible_files(directory: Path) -> list[Path]:
    """A release directory's files, without hidden ones (Snakemake's .snakemake_timestamp)."""
    return sorted(p for p in directory.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def _json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the release is incomplete)")
    return json_object(path)


def _fields(data: dict, keys: list[str], where: Path) -> list[Any]:
    """The values of `keys`, or a named error for those `data` lacks."""
    if missing := [k for k in keys if k not in data]:
        raise ValueError(f"{where}: no {', '.join(missing)} (not a release this workflow writes)")
    return [data[k] for k in keys]


def safetensors_parameters(path: Path) -> int:
    """The number of values a safetensors file holds, from its header alone."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        return sum(math.prod(info["shape"]) for name, info in header.items()
                   if name != "__metadata__")
    except (struct.error, ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{path}: not a safetensors file (truncated?)") from None


def _one_directory(paths: list[Path], what: str) -> Path:
    if len(paths) != 1 or not paths[0].is_dir():
        raise ValueError(f"{' '.join(map(str, paths))}: expected one {what} directory")
    return paths[0]


# --- Hugging Face: the merged model (transformers, vLLM) -------------------------------------

def read_huggingface(paths: list[Path]) -> Release:
    directory = _one_directory(paths, "Hugging Face model")
    config = _json(directory / "config.json")
    tok_config = _json(directory / "tokenizer_config.json")
    (template,) = _fields(tok_config, ["chat_template"], directory / "tokenizer_config.json")
    weights = sorted(directory.glob("model*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"{directory}: no model*.safetensors (the release is incomplete)")
    layers, dim, heads, ffn, vocab, context = _fields(config, [
        "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
        "vocab_size", "max_position_embeddings"], directory / "config.json")
    rope = config.get("rope_theta", config.get("rope_parameters", {}).get("rope_theta"))
    shape = {"parameters": sum(map(safetensors_parameters, weights)), "layers": layers,
             "hidden size": dim, "attention heads": heads,
             "key/value heads": config.get("num_key_value_heads", heads),
             "feed-forward size": ffn, "vocabulary": vocab, "context": context, "rotary base": rope}
    return Release("huggingface", _visible_files(directory), shape,
                   str(config.get("dtype", config.get("torch_dtype"))), template,
                   "tokenizer_config.json", tok_config.get("bos_token", tokenizer.BOS), directory)


def huggingface_usage(release: Release) -> str:
    return f"""With transformers (the chat template above is the tokenizer's):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

path = "{REPO_ID}"  # this repository's id on the Hub, or the folder it is downloaded to
stop = {json.dumps(prompt.STOP)}  # the model opening a next round by itself
tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
messages = [{{"role": "user", "content": {json.dumps(EXAMPLE)}}}]
ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                              return_dict=True)
out = model.generate(**ids, max_new_tokens=64, do_sample=False, tokenizer=tok, stop_strings=[stop])
answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
print(answer.split(stop)[0])
```

With vLLM, an OpenAI-compatible server with the same template: `vllm serve {REPO_ID}`
(stop at `{json.dumps(prompt.STOP)}` in each request, as above).
"""


# --- GGUF: llama.cpp and Ollama ---------------------------------------------------------------

def _gguf_fields(path: Path) -> tuple[dict[str, Any], int]:
    """A GGUF file's metadata (scalars and strings; arrays as their length) and its parameter
    count, read by gguf-py (llama.cpp's authors')."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields: dict[str, Any] = {}
    for name, f in reader.fields.items():
        if not f.types:
            continue
        fields[name] = len(f.data) if f.types[0].name == "ARRAY" else f.contents()
    return fields, sum(int(t.n_elements) for t in reader.tensors)


def gguf_type(file_type: int) -> str:
    """llama.cpp's name of a general.file_type (7 -> Q8_0)."""
    from gguf import LlamaFileType

    name = LlamaFileType(file_type).name
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def read_gguf(paths: list[Path]) -> Release:
    ggufs = [p for p in paths if p.suffix == ".gguf"]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file (the release is incomplete)")
        if p.suffix == ".gguf" and not gguf_file(p):
            raise ValueError(f"{p}: not a GGUF file")
        if p.suffix not in (".gguf", ".Modelfile"):
            raise ValueError(f"{p}: neither a .gguf file nor an Ollama .Modelfile")
    if not ggufs:
        raise ValueError(f"{' '.join(map(str, paths))}: no .gguf file among them")
    types, first, parameters = {}, None, 0
    for path in ggufs:
        fields, count = _gguf_fields(path)
        if first is None:  # the shape and template of one file: every type holds the same
            first, parameters = fields, count
        (file_type,) = _fields(fields, ["general.file_type"], path)
        types[path.name] = gguf_type(file_type)
    assert first is not None
    template, layers, dim, heads, ffn, vocab, context = _fields(first, [
        "tokenizer.chat_template", "llama.block_count", "llama.embedding_length",
        "llama.attention.head_count", "llama.feed_forward_length", "tokenizer.ggml.tokens",
        "llama.context_length"], ggufs[0])
    shape = {"parameters": parameters, "layers": layers, "hidden size": dim,
             "attention heads": heads,
             "key/value heads": first.get("llama.attention.head_count_kv", heads),
             "feed-forward size": ffn, "vocabulary": vocab, "context": context,
             "rotary base": first.get("llama.rope.freq_base")}
    modelfiles = [p for p in paths if p.suffix == ".Modelfile"]
    return Release("gguf", sorted(paths), shape, ", ".join(types.values()),
                   template, f"{ggufs[0].name}'s tokenizer.chat_template",
                   notes={"types": types, "modelfile": modelfiles[0].name if modelfiles else None,
                          "modelfile_from": _modelfile_from(modelfiles[0]) if modelfiles else None})


def _modelfile_from(path: Path) -> str | None:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            return line.removeprefix("FROM ").removeprefix("./").strip()
    return None


def gguf_usage(release: Release) -> str:
    types = release.notes["types"]
    # the smallest file for the example: what a laptop holds
    order = ["Q4_K_M", "Q8_0", "F16", "F32"]
    name = min(types, key=lambda n: order.index(types[n]) if types[n] in order else len(order))
    text = f"""Each `.gguf` file is the whole model in one file ({', '.join(types.values())}), its
tokenizer and the chat template above included. Download one:

```bash
hf download {REPO_ID} {name} --local-dir .
```

then run it with llama-cpp-python (llama.cpp's Python binding), which applies the file's chat
template:

```python
from llama_cpp import Llama

llm = Llama(model_path={json.dumps(name)}, n_ctx=2048, verbose=False)
messages = [{{"role": "user", "content": {json.dumps(EXAMPLE)}}}]
out = llm.create_chat_completion(messages, max_tokens=64, temperature=0.0,
                                 stop=[{json.dumps(prompt.STOP)}])
print(out["choices"][0]["message"]["content"])
```

Seen with llama-cpp-python 0.3.36 on an AVX-512 Xeon: decoding a Q8_0 or Q4_K_M file crashed
(a segmentation fault in llama.cpp's CPU weight repacking, which its Python API cannot turn off),
where the F16 file ran; llama.cpp's own tools turn the repacking off with `--no-repack`.
"""
    if release.notes["modelfile"]:
        text += f"""
With Ollama: `{release.notes['modelfile']}` is its recipe (`FROM` {release.notes['modelfile_from']},
the conversation template, the stop at the next round, the decoding defaults). In the folder that
holds both files:

```text
ollama create my-model -f {release.notes['modelfile']}
ollama run my-model
```
"""
    return text


# --- PEFT: the LoRA adapter on its base -------------------------------------------------------

def read_peft(paths: list[Path]) -> Release:
    directory = _one_directory(paths, "PEFT adapter")
    config = _json(directory / "adapter_config.json")
    weights = directory / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such file (the release is incomplete)")
    rank, alpha, modules, base = _fields(config, [
        "r", "lora_alpha", "target_modules", "base_model_name_or_path"],
        directory / "adapter_config.json")
    shape = {"parameters": safetensors_parameters(weights), "rank": rank, "alpha": alpha,
             "modules": ", ".join(modules)}
    # The adapter holds no tokenizer: its template is the layout the model was finetuned in.
    return Release("peft", _visible_files(directory), shape, f"LoRA rank {rank}",
                   prompt.chat_template(), "the finetuning's layout (vicuna.prompt.chat_template)",
                   root=directory, notes={"base": base})


def peft_usage(release: Release) -> str:
    base = release.notes["base"]
    return f"""The adapter loads on its base, `{base}` (adapter_config.json's
`base_model_name_or_path`: a Hub id, or a path on the machine it was made on; the workflow's
`release.peft_base_model` sets it). Its base's tokenizer may lack the chat template above: lay the
prompt out as shown there.

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

path = "{REPO_ID}"  # this repository's id on the Hub, or the folder it is downloaded to
base = AutoModelForCausalLM.from_pretrained({json.dumps(base)})
model = PeftModel.from_pretrained(base, path)
```
"""


KINDS: dict[str, Kind] = {
    "huggingface": Kind("Hugging Face (transformers, vLLM)", "transformers",
                        ("llama", "text-generation", "safetensors"), read_huggingface,
                        huggingface_usage),
    "gguf": Kind("GGUF (llama.cpp, Ollama)", "gguf", ("llama", "gguf", "llama.cpp", "ollama"),
                 read_gguf, gguf_usage),
    "peft": Kind("PEFT LoRA adapter", "peft", ("llama", "lora", "peft"), read_peft, peft_usage),
}
