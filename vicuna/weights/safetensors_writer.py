"""safetensors files written one tensor at a time (the reader is lazy_tensors.safetensors_index):
the header first, computed from the planned shapes, then each tensor as it is made, so that a
writer holds one tensor, never the model twice; and tensors packed into shards of a given size,
as transformers' save_pretrained packs them."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vicuna.weights.lazy_tensors import SAFETENSORS_DTYPES

SAFETENSORS_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


@dataclass
class Pending:
    """One tensor to write: its name and shape, and how to make it (called once, when its turn
    comes, so that only it is in memory)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    make: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        return torch.Size(self.shape).numel() * self.dtype.itemsize


def write_safetensors(path: Path, tensors: list[Pending], progress: tqdm | None = None) -> None:
    """The safetensors format (an 8-byte little-endian header length, a JSON header of each
    tensor's dtype, shape and byte range, then the bytes): the header first, from the shapes,
    then each tensor as it is made."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": SAFETENSORS_NAMES[t.dtype], "shape": list(t.shape),
                          "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors:
            tensor = t.make().contiguous()
            if tuple(tensor.shape) != t.shape or tensor.dtype != t.dtype:
                raise AssertionError(f"{t.name}: made {tuple(tensor.shape)} {tensor.dtype}, "
                                     f"planned {t.shape} {t.dtype}")
            f.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
            del tensor
            if progress is not None:
                progress.update()


def shards(tensors: list[Pending], max_bytes: int) -> list[list[Pending]]:
    """Consecutive tensors packed into files of at most max_bytes (a larger tensor alone), as
    transformers' save_pretrained does."""
    out: list[list[Pending]] = [[]]
    size = 0
    for t in tensors:
        if out[-1] and size + t.nbytes > max_bytes:
            out.append([])
            size = 0
        out[-1].append(t)
        size += t.nbytes
    return out
