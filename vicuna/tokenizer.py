"""A LLaMA-style sentencepiece model: BPE, byte fallback, <unk>/<s>/</s> = 0/1/2, identity normalization.

With sentencepiece's default normalization "\\n" would be silently dropped; with identity
normalization and byte fallback it encodes to <0x0A>, as in LLaMA's tokenizer.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from vicuna.files import atomic_path

# The special tokens and their ids, as LLaMA's tokenizer and every one trained here have them.
# PAD is OpenNMT-py's pad token: a converted vocabulary puts it at id 3 (<0x00>, a byte piece
# LLaMA's text never produces).
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<blank>"
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3


def train(texts: Iterable[str], vocab_size: int, output: str | Path) -> spm.SentencePieceProcessor:
    # Train on the lines of each text: "\n" must never become a piece of its own,
    # so that it falls back to the <0x0A> byte as in LLaMA.
    sentences = [line for text in texts for line in text.split("\n") if line]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        num_threads=1,  # one thread: the same bytes for the same data
        minloglevel=2,
    )
    with atomic_path(output) as tmp:
        tmp.write_bytes(model.getvalue())
    return spm.SentencePieceProcessor(model_file=str(output))


# What else a model's tokenizer file may be, told by its first bytes: a sentencepiece model is
# a protobuf, whose first field (a piece) starts with byte 0x0a.
TIKTOKEN_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2} \d+\r?\n")


def other_kind(path: str | Path) -> str | None:
    """What a tokenizer file is, where it is not a sentencepiece model and says so by its
    first bytes (None: it may be one): Hugging Face's tokenizer.json, or a tiktoken BPE file
    (Llama 3's tokenizer.model). Neither is supported: the workflow tokenizes with
    sentencepiece (OpenNMT-py's transform, CTranslate2's pieces, the GGUF's vocabulary)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if head.lstrip()[:1] == b"{":
        return ("a JSON file (Hugging Face's tokenizer.json?), not a sentencepiece model: only "
                "sentencepiece tokenizers are supported (LLaMA's, Llama 2's, Code Llama's, "
                "Mistral's tokenizer.model)")
    if TIKTOKEN_LINE.match(head):
        return ("a tiktoken BPE file (Llama 3's tokenizer.model?), not a sentencepiece model: "
                "only sentencepiece tokenizers are supported (LLaMA's, Llama 2's, Code Llama's, "
                "Mistral's tokenizer.model)")
    return None


def load(path: str | Path) -> spm.SentencePieceProcessor:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no sentencepiece model there")
    if (kind := other_kind(path)) is not None:
        raise ValueError(f"{path}: {kind}")
    return spm.SentencePieceProcessor(model_file=str(path))
