"""llama.cpp's own library, through llama-cpp-python's low-level API (ctypes on the libllama it
builds at install): the quantizer the GGUF release uses for the types the `gguf` package does not
implement (Q4_K_M), and a model's tokenizer and logits, which the tests compare with
sentencepiece and transformers, and which the `gguf` inference mode decodes with
(vicuna/serve/engines/gguf.py: one sequence at a time in one context, token ids in, logits out;
choosing the next token is the engine's).

Why this binding: llama-cpp-py-sync's prebuilt wheels (every version tried, 0.9014 to 0.11739)
are tagged manylinux2014 but their libllama.so needs glibc 2.38 (`__isoc23_strtol` and
friends), which Debian 12 (glibc 2.36) has not: it does not load here. llama-cpp-python
compiles llama.cpp at install instead (minutes, once), for the machine's own CPU.

llama.cpp logs every load to stderr; only its warnings and errors are let through.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path

import numpy as np

# llama.h's enums used here
GGML_TYPE_F32 = 0
LOG_WARN, LOG_CONT = 3, 5
FTYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}  # enum llama_ftype
MAGIC = b"GGUF"  # a GGUF file's first bytes (gguf.h)

_state: dict = {}
_lock = threading.Lock()


def library():
    """llama_cpp's low-level module, its backend initialised once, its logging cut to warnings."""
    with _lock:
        if "lib" not in _state:
            import llama_cpp as lib

            @lib.llama_log_callback
            def log(level, text, _):
                if level >= LOG_WARN and level != LOG_CONT:
                    sys.stderr.write(text.decode("utf-8", "replace"))

            lib.llama_log_set(log, ctypes.c_void_p(0))
            lib.llama_backend_init()
            _state.update(lib=lib, log=log)  # the callback must outlive every call
    return _state["lib"]


def quantize(source: str | Path, output: str | Path, ftype: str, threads: int = 0) -> None:
    """llama.cpp's quantizer (llama-quantize's `llama_model_quantize`): the GGUF `source`
    (F32 or F16) written as `output` in `ftype` (a key of FTYPES). Tensors whose rows are not
    a multiple of the type's block take llama.cpp's own fallback type."""
    lib = library()
    params = lib.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = threads
    status = lib.llama_model_quantize(str(source).encode(), str(output).encode(),
                                      ctypes.byref(params))
    if status != 0:
        raise ValueError(f"{source}: llama.cpp's quantizer failed to write {ftype} "
                         f"(status {status})")


def is_gguf(path: str | Path) -> bool:
    """Whether `path` is a file that starts as a GGUF does."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class Model:
    """A GGUF loaded by llama.cpp on the CPU, with one context of `n_ctx` tokens (one
    sequence) whose KV cache is float32 and whose attention is the plain one (no flash
    attention), so that a float32 file's logits are float32 all the way. `n_batch`: the most
    tokens one llama_decode call takes (a longer input is decoded in several), n_ctx by
    default; `n_ubatch`: the tokens computed at once inside it (n_batch by default)."""

    def __init__(self, path: str | Path, n_ctx: int = 512, threads: int = 2,
                 vocab_only: bool = False, n_batch: int | None = None,
                 n_ubatch: int | None = None):
        lib = library()
        self.lib, self.n_ctx, self.ctx, self._one = lib, n_ctx, None, None
        self.n_batch = min(n_batch or n_ctx, n_ctx)
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.vocab_only = vocab_only
        # llama.cpp's CPU weight repacking ("extra buffer types") segfaults in llama_decode on
        # Q8_0 files on this project's AVX-512 Xeon (llama-cpp-python 0.3.36, seen with a file
        # llama.cpp's own quantizer wrote too); without it Q8_0 decodes (the tests' Q8_0 check)
        mparams.use_extra_bufts = False
        self.model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise ValueError(f"{path}: llama.cpp could not load it as a model")
        self.vocab = lib.llama_model_get_vocab(self.model)
        if vocab_only:  # the tokenizer and the metadata only
            return
        cparams = lib.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch = n_ctx, self.n_batch
        cparams.n_ubatch = min(n_ubatch or self.n_batch, self.n_batch)
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.type_k = cparams.type_v = GGML_TYPE_F32
        if hasattr(cparams, "flash_attn_type"):
            cparams.flash_attn_type = 0  # disabled
        else:
            cparams.flash_attn = False
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lib.llama_model_free(self.model)
            self.model = None
            raise ValueError(f"{path}: llama.cpp could not make a context for it")

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._one is not None:
            self.lib.llama_batch_free(self._one)
            self._one = None
        if self.ctx is not None:
            self.lib.llama_free(self.ctx)
        if self.model is not None:
            self.lib.llama_model_free(self.model)
        self.ctx = self.model = None

    @property
    def vocab_size(self) -> int:
        return self.lib.llama_vocab_n_tokens(self.vocab)

    def metadata(self, key: str) -> str | None:
        """A metadata value of the file, as a string (None where the file has no such key)."""
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return None if n < 0 else buf.value.decode("utf-8")

    def tokenize(self, text: str, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """llama.cpp's tokenizer: with add_special, <s> first as the file's add_bos_token says;
        with parse_special, "<s>" in the text is the token."""
        raw = text.encode("utf-8")
        size = len(raw) + 8
        tokens = (self.lib.llama_token * size)()
        n = self.lib.llama_tokenize(self.vocab, raw, len(raw), tokens, size, add_special,
                                    parse_special)
        if n < 0:
            raise ValueError(f"llama.cpp's tokenizer needs {-n} tokens, more than {size}")
        return list(tokens[:n])

    def piece(self, token: int) -> str:
        """The text of a token in the file's vocabulary (sentencepiece's piece)."""
        return self.lib.llama_vocab_get_text(self.vocab, token).decode("utf-8", "replace")

    def clear(self) -> None:
        """Empty the context: the next decode starts a new sequence at position 0."""
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)

    def decode(self, tokens: list[int], start: int, every: bool = False) -> np.ndarray:
        """Feed `tokens` at positions start, start + 1, ... after what the context holds; the
        next-token logits after the last one [vocab], or after each one [len(tokens), vocab]
        with `every`. Inputs longer than n_batch are decoded in several calls."""
        n, lib = len(tokens), self.lib
        if self.ctx is None:
            raise ValueError("a vocab_only model has no logits")
        if not 0 < n <= self.n_ctx - start:
            raise ValueError(f"{n} tokens from position {start}: the context holds "
                             f"{self.n_ctx}")
        vocab = self.vocab_size
        out = np.empty((n if every else 1, vocab), dtype=np.float32)
        if n == 1:  # a generated token: the batch kept for it, not one allocated per token
            if self._one is None:
                self._one = lib.llama_batch_init(1, 0, 1)
            batch = self._one
        else:
            batch = lib.llama_batch_init(min(n, self.n_batch), 0, 1)
        try:
            for first in range(0, n, self.n_batch):
                chunk = tokens[first:first + self.n_batch]
                for i, token in enumerate(chunk):
                    batch.token[i], batch.pos[i] = token, start + first + i
                    batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
                    batch.logits[i] = every or first + i == n - 1
                batch.n_tokens = len(chunk)
                status = lib.llama_decode(self.ctx, batch)
                if status != 0:
                    raise ValueError(f"llama.cpp could not decode {len(chunk)} tokens at "
                                     f"position {start + first} (status {status})")
                rows = range(len(chunk)) if every else \
                    [len(chunk) - 1] if first + len(chunk) == n else []
                for i in rows:
                    out[first + i if every else 0] = np.ctypeslib.as_array(
                        lib.llama_get_logits_ith(self.ctx, i), shape=(vocab,))
        finally:
            if batch is not self._one:
                lib.llama_batch_free(batch)
        return out if every else out[0]

    def logits(self, tokens: list[int]) -> np.ndarray:
        """The next-token logits at every position of `tokens` [len(tokens), vocab], from an
        empty cache (one sequence, positions from 0)."""
        if self.ctx is None:
            raise ValueError("a vocab_only model has no logits")
        if not 0 < len(tokens) <= self.n_ctx:
            raise ValueError(f"{len(tokens)} tokens: between 1 and the context's {self.n_ctx}")
        self.clear()
        return self.decode(tokens, 0, every=True)
