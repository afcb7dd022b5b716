"""The config against its schema, before Snakemake's own `validate`, with messages a user can act
on: the key path, the value, and for YAML's number traps a hint.

Two differences from plain jsonschema (Draft 2020-12, as Snakemake uses): an integer must be an
int (YAML reads `800.0` as a float, which jsonschema would accept as the integer 800), and a
string that looks like a number written without a dot (YAML 1.1 reads `2e-5` as a string) is
named as such with the spelling to use.
"""

from __future__ import annotations

import os
import re

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
    if errors:
        raise ValueError("; ".join(message(e) for e in errors))


def key_path(error: ValidationError) -> str:
    return ".".join(map(str, error.absolute_path)) or "(the config)"


def message(error: ValidationError) -> str:
    """`train.train_steps: 800.0 is not of type 'integer' (write 800 ...)`: jsonschema's words
    (those Snakemake prints), the key path before them, a hint where YAML is the cause."""
    if error.context:  # anyOf / oneOf: the alternative that came closest
        error = best_match(error.context)
    return f"{key_path(error)}: {error.message}{_hint(error)}"


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
