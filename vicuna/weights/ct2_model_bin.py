"""A CTranslate2 4 model.bin, read without CTranslate2: its variables' names, shapes and types
(the data skipped), and the value of a scalar (the spec's settings: the sliding window, ...).

Layout (CTranslate2's specs/model_spec.py writes it): the binary version, the spec's name, its
revision, then each variable as its name, its shape, its type and its bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# CTranslate2's variable types (include/ctranslate2/types.h), with their struct formats
TYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
SCALAR_FORMATS = {"float32": "f", "int8": "b", "int16": "h", "int32": "i"}


@dataclass(frozen=True)
class Variable:
    name: str
    shape: tuple[int, ...]
    kind: str
    offset: int  # of its data in the file
    nbytes: int


def variables(model_bin: str | Path) -> Iterator[Variable]:
    """Each variable's header, in the file's order; ValueError where the file is not of the
    layout CTranslate2 4 writes."""
    try:
        with open(model_bin, "rb") as f:
            _read(f, "I")  # binary version
            _string(f)  # spec name
            _read(f, "I")  # revision
            for _ in range(_read(f, "I")):
                name, dims = _string(f), _read(f, "B")
                shape = struct.unpack(f"{dims}I", f.read(4 * dims))
                kind, size = TYPES[_read(f, "B")], _read(f, "I")
                yield Variable(name, shape, kind, f.tell(), size)
                f.seek(size, os.SEEK_CUR)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"{model_bin}: not a CTranslate2 4 model.bin ({e})") from None


def scalar(model_bin: str | Path, name: str) -> float | int | None:
    """The value of scalar variable `name` (None where the model has no such variable, or the
    file is not of CTranslate2 4's layout)."""
    try:
        for v in variables(model_bin):
            if v.name == name and not v.shape and v.kind in SCALAR_FORMATS:
                with open(model_bin, "rb") as f:
                    f.seek(v.offset)
                    return _read(f, SCALAR_FORMATS[v.kind])
    except (OSError, ValueError):
        return None
    return None


def _read(f, fmt: str) -> int:
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def _string(f) -> str:
    return f.read(_read(f, "H")).rstrip(b"\0").decode("utf-8")
