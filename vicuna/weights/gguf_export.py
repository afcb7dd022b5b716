"""OpenNMT-py checkpoints -> GGUF, llama.cpp's and Ollama's file: one file holding the weights
(architecture `llama`), the model's shape, the sentencepiece vocabulary with its scores and token
types, the special token ids and the chat template.

The tensor names are a table (vicuna/weights/name_maps.py, META_TO_GGUF). llama.cpp's `llama`
rotates interleaved pairs, Meta's layout, which a converted checkpoint keeps (rotary_interleave):
q and k go in as they are, where llama.cpp's own converter un-permutes Hugging Face's rows.

Types: F32, F16 and Q8_0 are written by the `gguf` package (gguf-py, llama.cpp's authors'); as
llama.cpp's converter does, norms stay F32, and a Q8_0 tensor whose rows are not a multiple of
Q8_0's 32-value block is written F16 (said in the summary). Q4_K_M is llama.cpp's own mix of
4- and 6-bit k-quants, made by llama.cpp's quantizer (vicuna.weights.llamacpp) from an F16 file written
first beside the output and removed after.

A model with a sliding window (Mistral v0.1) gets `llama.attention.sliding_window`, gguf-py's
key, which llama.cpp's `llama` architecture does not read: past the window llama.cpp computes
the model without one. An engine on llama.cpp reads it (`sliding_window`) and refuses a prompt
and answer longer than it.

Memory: the header is written from the shapes, then each tensor leaves the checkpoint as it is
converted and written: the job holds the checkpoint and one tensor.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from vicuna import prompt, tokenizer
from vicuna.weights.hf_export import check_vocabulary, checked_names, model_order, source_tensor
from vicuna.weights.name_maps import META_TO_GGUF, rename
from vicuna.weights.shape import LLAMA_CONTEXT, LlamaShape, meta_shapes

TYPES = ("f32", "f16", "q8_0", "q4_k_m")
QUANTIZED_BY_LLAMA_CPP = {"q4_k_m": "f16"}  # type -> the type written first for the quantizer


def _gguf():
    import gguf

    return gguf


def written_types(gguf_type: str):
    """(the GGML type of the 2-D weights, the file's general.file_type) of a type the gguf
    package writes."""
    g = _gguf()
    q, f = g.GGMLQuantizationType, g.LlamaFileType
    return {"f32": (q.F32, f.ALL_F32), "f16": (q.F16, f.MOSTLY_F16),
            "q8_0": (q.Q8_0, f.MOSTLY_Q8_0)}[gguf_type]


def token_vocabulary(tokenizer_model: str | Path) -> dict:
    """The sentencepiece model's pieces, scores and token types as GGUF stores them, and its
    add_dummy_prefix (llama.cpp's add_space_prefix). A normalization llama.cpp's tokenizer does
    not apply (anything but identity, or remove_extra_whitespaces) is refused: llama.cpp would
    tokenize text otherwise than the model was trained."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    g = _gguf()
    sp = tokenizer.load(tokenizer_model)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(tokenizer_model).read_bytes())
    norm = proto.normalizer_spec
    if norm.name not in ("identity", "") or norm.remove_extra_whitespaces:
        raise ValueError(f"{tokenizer_model}: normalization {norm.name!r} (remove_extra_whitespaces "
                         f"{norm.remove_extra_whitespaces}): llama.cpp's tokenizer applies none, "
                         "so a GGUF would tokenize text otherwise than the model was trained; "
                         "LLaMA's is identity")
    if proto.trainer_spec.model_type != spm.sentencepiece_model_pb2.TrainerSpec.BPE:
        raise ValueError(f"{tokenizer_model}: a sentencepiece model of type "
                         f"{proto.trainer_spec.model_type}, not BPE as LLaMA's: llama.cpp's "
                         "`llama` tokenizer is LLaMA's")
    tokens, scores, types = [], [], []
    user_defined = spm.sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # user-defined pieces (Code Llama's infilling tokens) are matched whole in any text by
        # sentencepiece, and by llama.cpp as USER_DEFINED
        kind = (g.TokenType.UNKNOWN if sp.is_unknown(i) else g.TokenType.CONTROL
                if sp.is_control(i) else g.TokenType.UNUSED if sp.is_unused(i)
                else g.TokenType.BYTE if sp.is_byte(i) else g.TokenType.USER_DEFINED
                if proto.pieces[i].type == user_defined else g.TokenType.NORMAL)
        types.append(kind)
    return {"tokens": tokens, "scores": scores, "types": types,
            "add_space_prefix": norm.add_dummy_prefix}


def sliding_window(path: str | Path) -> int | None:
    """The model's sliding window as a GGUF states it (`llama.attention.sliding_window`, gguf-py's
    key; Mistral's count: a token sees itself and window - 1 before it), None for none.
    llama.cpp's `llama` architecture does not read it (measured: the logits past the window are
    those of the model without one), so an engine on llama.cpp refuses a prompt and answer
    longer than it."""
    g = _gguf()
    reader = g.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    window = reader.fields.get(g.Keys.Attention.SLIDING_WINDOW.format(arch=arch))
    return int(window.contents()) if window is not None else None


def add_metadata(writer, shape: LlamaShape, vocab: dict, context: int, name: str,
                 file_type: int) -> None:
    """The shape, the tokenizer and the chat template, with gguf-py's key names."""
    g = _gguf()
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_context_length(context)
    writer.add_embedding_length(shape.dim)
    writer.add_block_count(shape.n_layers)
    writer.add_feed_forward_length(shape.hidden_dim)
    writer.add_head_count(shape.n_heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.norm_eps)
    writer.add_vocab_size(shape.vocab_size)
    if shape.sliding_window:
        writer.add_sliding_window(shape.sliding_window)
    writer.add_tokenizer_model("llama")  # llama.cpp's sentencepiece (SPM) tokenizer
    writer.add_token_list(vocab["tokens"])
    writer.add_token_scores(vocab["scores"])
    writer.add_token_types(vocab["types"])
    writer.add_add_space_prefix(vocab["add_space_prefix"])
    writer.add_bos_token_id(tokenizer.BOS_ID)
    writer.add_eos_token_id(tokenizer.EOS_ID)
    writer.add_unk_token_id(tokenizer.UNK_ID)
    # OpenNMT-py's pad (its <blank>, sentencepiece's <0x00>, kept as the byte it is for byte
    # fallback): the id the model was trained with masked out
    writer.add_pad_token_id(tokenizer.PAD_ID)
    writer.add_add_bos_token(True)  # <s> before a text, as the workflow's engines give it
    writer.add_add_eos_token(False)
    writer.add_chat_template(prompt.chat_template())
    writer.add_quantization_version(g.GGML_QUANT_VERSION)


def tensor_type(meta_name: str, shape: tuple[int, ...], weight_type):
    """The GGML type a tensor is written in: norms F32; a weight whose rows do not fill whole
    blocks of a block type, F16 (llama.cpp's converter's fallback)."""
    g = _gguf()
    if len(shape) == 1:
        return g.GGMLQuantizationType.F32
    block, _ = g.GGML_QUANT_SIZES[weight_type]
    if shape[-1] % block:
        return g.GGMLQuantizationType.F16
    return weight_type


def _array(w: torch.Tensor, ggml_type) -> np.ndarray:
    g = _gguf()
    t = g.GGMLQuantizationType
    if ggml_type == t.F32:
        return w.to(torch.float32).contiguous().numpy()
    if ggml_type == t.F16:
        return w.to(torch.float16).contiguous().numpy()
    return g.quants.quantize(w.to(torch.float32).contiguous().numpy(), ggml_type)


def write_gguf(checkpoint: dict, shape: LlamaShape, vocab: dict, path: Path, gguf_type: str,
               context: int, name: str, where: str) -> Counter:
    """The GGUF of a type the gguf package writes, tensor by tensor; the checkpoint is emptied
    on the way. Returns how many tensors of each GGML type it holds."""
    g = _gguf()
    weight_type, file_type = written_types(gguf_type)
    onmt = checked_names(checkpoint, shape, where, target="llama.cpp's llama")
    expected = meta_shapes(shape)
    order = model_order(shape)
    types = {m: tensor_type(m, expected[m], weight_type) for m in order}
    writer = g.GGUFWriter(path, "llama")
    add_metadata(writer, shape, vocab, context, name, file_type)
    for m in order:
        t = types[m]
        if t in (g.GGMLQuantizationType.F32, g.GGMLQuantizationType.F16):
            dtype = np.float32 if t == g.GGMLQuantizationType.F32 else np.float16
            writer.add_tensor_info(rename(m, META_TO_GGUF), expected[m], np.dtype(dtype),
                                   int(np.prod(expected[m])) * np.dtype(dtype).itemsize)
        else:
            byte_shape = g.quants.quant_shape_to_byte_shape(expected[m], t)
            writer.add_tensor_info(rename(m, META_TO_GGUF), byte_shape, np.dtype(np.uint8),
                                   int(np.prod(byte_shape)), raw_dtype=t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for m in order:
        writer.write_tensor_data(_array(source_tensor(checkpoint, onmt[m]), types[m]))
    writer.close()
    return Counter(types[m].name for m in order)


def export_gguf(checkpoint: dict, tokenizer_model: str | Path, path: str | Path, *,
                gguf_type: str = "f16", context: int | None = None, name: str | None = None,
                threads: int = 0, where: str = "checkpoint") -> str:
    """A full OpenNMT-py checkpoint (converted or merged) as one GGUF file at `path` (written
    there directly: the caller gives a temporary name). Everything is checked before anything
    is written. Returns what was written, in words."""
    if gguf_type not in TYPES:
        raise ValueError(f"--gguf_type {gguf_type}: GGUF types written here are {', '.join(TYPES)}")
    path, tokenizer_model = Path(path), Path(tokenizer_model)
    shape = LlamaShape.from_opt(checkpoint["opt"], len(checkpoint["vocab"]["src"]), where)
    context = context or shape.context or LLAMA_CONTEXT
    check_vocabulary(checkpoint, tokenizer_model, where)
    vocab = token_vocabulary(tokenizer_model)
    name = name or path.name
    first = QUANTIZED_BY_LLAMA_CPP.get(gguf_type)
    if first is None:
        counts = write_gguf(checkpoint, shape, vocab, path, gguf_type, context, name, where)
        return f"{gguf_type.upper()}: " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    from vicuna.weights import llamacpp

    source = path.with_name(path.name + f".{first}")
    try:
        write_gguf(checkpoint, shape, vocab, source, first, context, name, where)
        llamacpp.quantize(source, path, gguf_type, threads)
    finally:
        if source.exists():
            os.unlink(source)
    return f"{gguf_type.upper()} by llama.cpp's quantizer, from {first.upper()}"
