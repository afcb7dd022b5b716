"""The config against its schema, before Snakemake's own `validate`, with messages a user can act
on: the key path, the value, and for YAML's number traps a hint.

Two differences from plain jsonschema (Draft 2020-12, as Snakemake uses): an integer must be an
int (YAML reads `800.0` as a float, which jsonschema would accept as the integer 800), and a
string that looks like a number written without a dot (YAML 1.1 reads `2e-5` as a string) is
named as such with the spelling to use.

Two of jsonschema's messages are put in a user's words: a `oneOf` of required keys ("give
json+format or url, not both") instead of a dump of the record and of each alternative; and
`unevaluatedProperties` names only keys the schema does not know, since a key whose own check
failed (`weight: -1`) counts as unevaluated too and would be called unexpected before the real
cause is named.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

# 2e-5, -1E3: exponent notation with no dot in the mantissa, a string to YAML 1.1
NUMBER_WITHOUT_DOT = re.compile(r"^\s*([+-]?\d+)([eE][+-]?\d+)\s*$")


def _strict_integer(checker, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def validate(config: dict, schema_path: str | os.PathLike) -> None:
    """Raise one ValueError naming every key at fault (one line), or return None."""
    with open(schema_path, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path)))
    messages = [m for e in errors if (m := message(e, schema))]
    if messages:
        raise ValueError("; ".join(messages))


def key_path(error: ValidationError) -> str:
    return ".".join(map(str, error.absolute_path)) or "(the config)"


def message(error: ValidationError, root: dict | None = None) -> str | None:
    """`train.train_steps: 800.0 is not of type 'integer' (write 800 ...)`: jsonschema's words
    (those Snakemake prints), the key path before them, a hint where YAML is the cause; None
    for an error that only echoes another (see the module's docstring). `root`: the schema,
    to look up the keys a record may have."""
    if error.validator == "oneOf" and (choice := _required_choice(error)):
        return f"{key_path(error)}: {choice}"
    if error.validator == "unevaluatedProperties" and isinstance(error.instance, dict):
        known = _known_keys(error.schema, root or {})
        unknown = sorted(key for key in error.instance if key not in known)
        if not unknown:
            return None  # each key is known: the error at its own path says what is wrong
        names = ", ".join(map(repr, unknown))
        return (f"{key_path(error)}: Unevaluated properties are not allowed ({names} "
                f"{'was' if len(unknown) == 1 else 'were'} unexpected)"
                f"{_did_you_mean(unknown, known)}")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = _known_keys(error.schema, root or {})
        unknown = sorted(key for key in error.instance if key not in known)
        return f"{key_path(error)}: {error.message}{_did_you_mean(unknown, known)}"
    if error.context:  # anyOf / oneOf: the alternative that came closest
        error = best_match(error.context)
    return f"{key_path(error)}: {error.message}{_hint(error)}"


def _did_you_mean(unknown: list[str], known: set[str]) -> str:
    """` (did you mean 'max_length'?)` for the unknown keys that are a typo of a known one."""
    guesses = [f"{match[0]!r} for {key!r}" if len(unknown) > 1 else repr(match[0])
               for key in unknown if (match := difflib.get_close_matches(key, sorted(known), 1, 0.7))]
    return f" (did you mean {', '.join(guesses)}?)" if guesses else ""


def _required_choice(error: ValidationError) -> str | None:
    """For a oneOf whose alternatives are sets of required keys ([json, format] | [url]):
    "give json+format or url", and what is wrong (both given, or which key is missing)."""
    alternatives = error.validator_value
    if not isinstance(error.instance, dict) or not all(
            isinstance(alt, dict) and set(alt) == {"required"} for alt in alternatives):
        return None
    choices = [alt["required"] for alt in alternatives]
    give = "give " + " or ".join("+".join(keys) for keys in choices)
    complete = [keys for keys in choices if all(k in error.instance for k in keys)]
    if len(complete) > 1:
        return f"{give}, not both" if len(choices) == 2 else f"{give}, only one of them"
    started = [keys for keys in choices if any(k in error.instance for k in keys)]
    if len(started) == 1:
        missing = [k for k in started[0] if k not in error.instance]
        return f"{give} ({', '.join(map(repr, missing))} is missing)"
    return give


def _known_keys(schema: dict, root: dict, seen: frozenset[str] = frozenset()) -> set[str]:
    """The keys that `schema` declares, through allOf / anyOf / oneOf and local $refs."""
    keys = set(schema.get("properties") or {})
    for part in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(part) or []:
            keys |= _known_keys(sub, root, seen)
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        target: Any = root
        for name in ref[2:].split("/"):
            target = target.get(name, {}) if isinstance(target, dict) else {}
        keys |= _known_keys(target, root, seen | {ref})
    return keys


def _hint(error: ValidationError) -> str:
    value = error.instance
    if isinstance(value, str) and (m := NUMBER_WITHOUT_DOT.match(value)):
        return (f" (write {m.group(1)}.0{m.group(2)}: YAML reads {value.strip()} without a dot "
                f"in the mantissa as a string)")
    if error.validator == "type" and isinstance(value, float) and value.is_integer():
        return f" (write {int(value)}, without the decimal point)"
    return ""


def check_keys(config: dict) -> None:
    """What the schema cannot express, across keys: a ValueError naming the keys at fault."""
    if "synthetic" in config:
        model = config["synthetic"]["model"]
        if model["dim"] % model["n_heads"]:
            raise ValueError(f"synthetic.model.dim ({model['dim']}) must be divisible by "
                             f"synthetic.model.n_heads ({model['n_heads']})")
    train = config["train"]
    if train["quantization"]["layers"] and not train["quantization"]["type"]:
        raise ValueError("train.quantization.type must be set when train.quantization.layers "
                         "is not empty (OpenNMT-py would silently quantize nothing)")
    if train["save_checkpoint_steps"] > train["train_steps"]:
        raise ValueError("train.save_checkpoint_steps must not exceed train.train_steps")
    check_gguf_mode(config)


def check_gguf_mode(config: dict) -> None:
    """The gguf inference mode, planned while release.gguf writes GGUF files, reads one of them
    (inference.gguf_type) and decodes without beam search."""
    written, inference = config["release"].get("gguf", []), config["inference"]
    if not written:
        return
    kind = inference.get("gguf_type", "q8_0")
    if kind not in written:
        raise ValueError(f"inference.gguf_type is {kind}, which release.gguf ({', '.join(written)}) "
                         f"does not write: add it there or choose one of those")
    if inference.get("beam_size", 1) != 1:
        raise ValueError(f"inference.beam_size is {inference['beam_size']}, but the gguf mode "
                         f"(llama.cpp) has no beam search: set 1, or release.gguf: [] to leave "
                         f"the gguf mode out")


def default_tokenizer(model_dir: str) -> str:
    """base.tokenizer_model where the config gives none: model_dir/tokenizer.model, else the one
    beside model_dir (Meta's LLaMA download); the first of the two where neither exists yet."""
    own = Path(model_dir) / "tokenizer.model"
    beside = Path(model_dir).parent / "tokenizer.model"
    return str(beside if not own.exists() and beside.exists() else own)


def records_have_outputs(path: str) -> bool:
    """Whether alpaca records (a JSON array or JSON lines) all have a non-empty `output`: then
    they are the references. A file that cannot be read says False here; its rule names the
    fault."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        stripped = text.lstrip()
        records = json.loads(text) if stripped.startswith("[") else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError):
        return False
    return bool(records) and all(isinstance(r, dict) and isinstance(r.get("output"), str)
                                 and r["output"].strip() for r in records)


def input_paths(config: dict) -> dict[str, str]:
    """Every file or directory the config names as an input, by key path (a URL is no path)."""
    paths = {"base.model_dir": config["base"]["model_dir"]}
    if "tokenizer_model" in config["base"]:
        paths["base.tokenizer_model"] = config["base"]["tokenizer_model"]
    data = config["data"]
    sources = {f"data.corpora.{name}": spec for name, spec in data["corpora"].items()}
    if "valid" in data:
        sources["data.valid"] = data["valid"]
    sources |= {f"data.heldout.{name}": spec for name, spec in data.get("heldout", {}).items()}
    for key, spec in sources.items():
        if "json" in spec:
            paths[f"{key}.json"] = spec["json"]
        elif "://" not in spec["url"]:
            paths[f"{key}.url"] = spec["url"]
    for key in ("input_examples", "references"):
        if key in config["inference"]:
            paths[f"inference.{key}"] = config["inference"][key]
    mmlu = config.get("benchmarks", {}).get("mmlu")
    if mmlu and "://" not in mmlu["data"]:
        paths["benchmarks.mmlu.data"] = mmlu["data"]
    return paths


# What goes where a missing input should be, by key.
HINTS = {"base.model_dir": ": put the foundation model there (Meta's params.json + "
                           "consolidated.*.pth, or a Hugging Face directory: config.json + "
                           "*.safetensors or pytorch_model*.bin), or point base.model_dir at it"}


TOKENIZER_JSON_ONLY = (" (base.model_dir has a tokenizer.json: Hugging Face's fast tokenizer is "
                       "not supported, only a sentencepiece tokenizer.model: LLaMA's, Llama 2's, "
                       "Code Llama's, Mistral's)")


def check_inputs(config: dict, made_by_a_rule: Callable[[str], bool],
                 defaulted: set[str] = frozenset()) -> None:
    """Every input the config names exists, or a rule of the workflow makes it (the tiny
    default's base and data): a ValueError naming each key and path that is neither, whatever
    exists on disk beside it (a run's earlier outputs never stand in for a missing input).
    `defaulted`: keys the config did not give (their message says where they were looked for)."""
    missing = []
    for key, path in input_paths(config).items():
        if Path(path).exists() or made_by_a_rule(path):
            continue
        if key == "base.model_dir" and any(made_by_a_rule(f"{path}/{name}")
                                           for name in ("params.json", "config.json")):
            continue
        missing.append(f"{key}: {path} does not exist{HINTS.get(key, '')}"
                       + (" (not given: looked for in base.model_dir and beside it)"
                          if key in defaulted else "")
                       + (TOKENIZER_JSON_ONLY if key == "base.tokenizer_model" and
                          (Path(config["base"]["model_dir"]) / "tokenizer.json").is_file() else ""))
    if missing:
        raise ValueError("; ".join(missing))



def key_source(key: str, files: list[str]) -> str:
    """The config file that sets `key` (a dotted path, or its deepest part that a file sets):
    the last of `files` to set it, as Snakemake merges them; the last file where none does."""
    best, depth = files[-1] if files else "the config", -1
    parts = [] if key == "(the config)" else key.split(".")
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                node: Any = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError):
            continue
        found = 0
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                break
            node, found = node[part], found + 1
        if found >= depth:
            best, depth = path, found
    return best


def report(error: ValueError, files: list[str]) -> str:
    """A config error as the user reads it: one line a fault, each naming the file that set the
    key (`error: config.yaml: train.train_steps: 800.0 is not ...`)."""
    faults = str(error).split("; ")
    top = [f.split("'")[1] for f in faults
           if f.startswith("(the config): '") and f.endswith("is a required property")]
    lines = []
    if files and top:
        # a layered file (a base's, the recipe, a site's override) given without the whole
        # config it changes: say that, not every required key of each section it touches
        faults = [f for f in faults if not f.endswith("is a required property")]
        given = " ".join(files)
        lines.append(f"error: {given}: not a whole config (no {', '.join(top)}): a file that "
                     f"changes another goes after it, e.g. --configfile "
                     f"configs/llama7b-vicuna.yaml {given}")
    for fault in faults:
        key = fault.split(": ", 1)[0] if ": " in fault else "(the config)"
        lines.append(f"error: {key_source(key, files)}: {fault}")
    return "\n".join(lines)
