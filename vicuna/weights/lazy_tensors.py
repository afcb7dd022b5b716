"""Reading tensors from checkpoint files without loading the files whole: an index of where
each tensor lies (safetensors headers; torch zip checkpoints through a restricted unpickler
that accepts tensors only), then plain reads straight into the destination tensor.

Why not torch.load(mmap=True) or safetensors' safe_open: pages of a mapped file that have been
read count in the resident memory for as long as the file stays mapped (see vicuna/weights/convert.py).
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from vicuna.files import EMPTY_CHECKPOINT, NOT_A_ZIP, TRUNCATED_SAFETENSORS


class Source(Protocol):
    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]

    def read_into(self, out: torch.Tensor, bounce: torch.Tensor | None = None) -> None: ...


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _as_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def _read_at(f, offset: int, out: torch.Tensor) -> None:
    """Fill the contiguous tensor `out` with the bytes at `offset` of the open file `f`."""
    assert out.is_contiguous()  # else reshape(-1) would copy, and the bytes would go nowhere
    view = _as_bytes(out)
    f.seek(offset)
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise ValueError(f"{f.name}: truncated ({len(view) - done} bytes missing at offset "
                             f"{offset + done})")
        done += n


BOUNCE_BYTES = 16 << 20  # a strided destination is filled through a buffer of at most this


@dataclass(frozen=True)
class FileTensor:
    """A tensor stored in `path` from byte `offset`, with element strides `stride`."""

    path: Path
    offset: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def contiguous(self) -> bool:
        return all(s == c for n, s, c in zip(self.shape, self.stride, _contiguous_strides(self.shape),
                                             strict=True) if n > 1)

    @property
    def span(self) -> int:
        """Storage elements from the first to the last one the tensor uses."""
        if 0 in self.shape:
            return 0
        return 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))

    def read_into(self, out: torch.Tensor, bounce: torch.Tensor | None = None) -> None:
        """Fill `out`, of this tensor's dtype and size, in its logical (row-major) order: a
        shard's slice of the joined tensor, or a view that reorders rows. Reads go straight into
        `out` where it is contiguous, else through `bounce` (a uint8 buffer, reused from tensor to
        tensor so that the heap does not fragment), one block of `out`'s first dimension at a
        time: never a whole second copy."""
        assert out.numel() == self.numel and out.dtype == self.dtype
        with open(self.path, "rb", buffering=0) as f:
            if not self.contiguous:  # e.g. a view saved with its whole storage (rare)
                span = torch.empty(self.span, dtype=self.dtype)
                _read_at(f, self.offset, span)
                out.copy_(span.as_strided(self.shape, self.stride).reshape(out.shape))
            elif out.is_contiguous():
                _read_at(f, self.offset, out)
            else:
                block = out[0].numel() if out.dim() > 1 else 1  # elements per first-dim index
                size = self.dtype.itemsize
                if bounce is None or bounce.numel() < block * size:
                    bounce = torch.empty(max(BOUNCE_BYTES, block * size), dtype=torch.uint8)
                rows = bounce.numel() // (block * size) if block else out.shape[0]
                for a in range(0, out.shape[0], rows):
                    b = min(a + rows, out.shape[0])
                    buf = bounce[: (b - a) * block * size].view(self.dtype).view(out[a:b].shape)
                    _read_at(f, self.offset + a * block * size, buf)
                    out[a:b].copy_(buf)

    @property
    def numel(self) -> int:
        n = 1
        for size in self.shape:
            n *= size
        return n

    def load(self) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=self.dtype)
        self.read_into(out)
        return out


@dataclass(frozen=True)
class LoadedTensor:
    """A tensor already in memory (torch's legacy, pre-zip format cannot be read lazily)."""

    path: Path
    tensor: torch.Tensor

    @property
    def dtype(self) -> torch.dtype:
        return self.tensor.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def read_into(self, out: torch.Tensor, bounce: torch.Tensor | None = None) -> None:
        out.copy_(self.tensor.reshape(out.shape))


SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def safetensors_index(path: Path) -> dict[str, FileTensor]:
    """The tensors of a .safetensors file: an 8-byte little-endian header length, a JSON header
    {name: {dtype, shape, data_offsets: [begin, end]}}, then the data. Only the header is read."""
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: {EMPTY_CHECKPOINT}")
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= size - 8:
            raise ValueError(f"{path}: {TRUNCATED_SAFETENSORS} (its header says {n} bytes)")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ValueError(f"{path}: {TRUNCATED_SAFETENSORS} (header: {e})") from e
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = SAFETENSORS_DTYPES.get(info["dtype"])
            shape = tuple(int(s) for s in info["shape"])
            begin, end = info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: damaged header entry for {name}") from e
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, not supported")
        numel = 1
        for s in shape:
            numel *= s
        if end - begin != numel * dtype.itemsize or 8 + n + end > size:
            raise ValueError(f"{path}: {TRUNCATED_SAFETENSORS} (tensor {name} does not fit "
                             "the file)")
        tensors[name] = FileTensor(path, 8 + n + begin, dtype, shape, _contiguous_strides(shape))
    return tensors


_STORAGE_DTYPES = {
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16, "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}


@dataclass(frozen=True)
class _Storage:
    path: Path
    offset: int
    dtype: torch.dtype
    numel: int


def _rebuild_tensor(storage: _Storage, storage_offset: int, size, stride, *_ignored) -> FileTensor:
    t = FileTensor(storage.path, storage.offset + storage_offset * storage.dtype.itemsize,
                   storage.dtype, tuple(size), tuple(stride))
    if storage_offset + t.span > storage.numel:
        raise ValueError(f"{storage.path}: a tensor reaches past its storage")
    return t


def _rebuild_parameter(data: FileTensor, *_ignored) -> FileTensor:
    return data


# The only globals a checkpoint of tensors needs; anything else is refused (as torch.load's
# weights_only would), so reading a checkpoint runs no code from it.
_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _LazyUnpickler(pickle.Unpickler):
    """torch.save's data.pkl, with each storage replaced by its place in the zip file."""

    def __init__(self, file, path: Path, records: dict[str, tuple[int, int]]):
        super().__init__(file)
        self.path, self.records = path, records

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _PICKLE_GLOBALS:
            return _PICKLE_GLOBALS[module, name]
        raise pickle.UnpicklingError(f"{self.path}: holds {module}.{name}, not only tensors")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or str(key) not in self.records:
            raise pickle.UnpicklingError(f"{self.path}: storage {key} is missing")
        offset, nbytes = self.records[str(key)]
        if numel * dtype.itemsize > nbytes:
            raise ValueError(f"{self.path}: storage {key} is truncated")
        return _Storage(self.path, offset, dtype, numel)


def torch_index(path: Path) -> dict[str, Source]:
    """The tensors of a torch.save file (Meta's .pth, Hugging Face's .bin). Its zip records are
    stored uncompressed, so each tensor is read later from its offset; only data.pkl is read."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: {EMPTY_CHECKPOINT}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip archive cut short: its directory is at the end
                raise ValueError(f"{path}: {NOT_A_ZIP}")
        try:  # torch < 1.6's format: no lazy reading
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # EOFError, UnpicklingError, RuntimeError, IndexError, ...
            raise ValueError(f"{path}: {NOT_A_ZIP}") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in
                                                  state.values()):
            raise ValueError(f"{path}: not a state dict of tensors")
        return {k: LoadedTensor(path, v) for k, v in state.items()}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
            pkl = [i for i in zf.infolist() if i.filename.endswith("/data.pkl") or
                   i.filename == "data.pkl"]
            if len(pkl) != 1:
                raise ValueError(f"{path}: not a torch checkpoint (no data.pkl)")
            prefix = pkl[0].filename[: -len("data.pkl")]
            names = set(zf.namelist())
            if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder") != b"little":
                raise ValueError(f"{path}: big-endian checkpoint, not supported")
            records = {}
            for info in zf.infolist():
                if not info.filename.startswith(f"{prefix}data/"):
                    continue
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{path}: compressed record {info.filename}")
                raw.seek(info.header_offset)
                local = raw.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise ValueError(f"{path}: damaged zip record {info.filename}")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                offset = info.header_offset + 30 + name_len + extra_len
                records[info.filename[len(prefix) + 5:]] = (offset, info.file_size)
            with zf.open(pkl[0]) as f:
                state = _LazyUnpickler(f, path, records).load()
    except (zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: damaged checkpoint ({e})") from e
    if not isinstance(state, dict) or not all(isinstance(v, FileTensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return dict(state)


def index_file(path: Path) -> dict[str, Source]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    return safetensors_index(path) if path.suffix == ".safetensors" else torch_index(path)
