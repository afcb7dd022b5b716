"""Which tokens of a training example carry the loss with `train.answer_loss_only`: every
answer of a conversation, and what ends it, but no instruction, human turn or task line.

Pure functions on token ids and the vocabulary's pieces; the one place both the training's
loss (vicuna.onmt_fixes.mask_every_answer, in training and in validation), the samples the
workflow shows (`finetune_samples`) and the held-out answer-only loss (vicuna.evaluation.evaluate) take the
mask from.

An example is the target side of an OpenNMT-py LM batch row: its tokens, then </s>. Two cases:

- **Single-round** examples carry OpenNMT-py's own mark: its `insert_mask_before_placeholder`
  transform puts a placeholder (a pad token once tokenized) right after the one response
  marker, and `zero_out_prompt_loss` keeps the loss on what follows it. Such a row keeps exactly
  OpenNMT-py's mask (`after_placeholder`): every token after the first pad, </s> included.
- Every other row (OpenNMT-py puts no mark where the marker occurs twice or more) is read in the
  layout of vicuna.prompt (`answer_spans`): an answer starts right after each ANSWER_START
  ("### Response:\\n") and runs up to and including the next ANSWER_END (prompt.STOP,
  "\\n\\n### Instruction:", the next round's start: what the chatbot stops at, so the model must
  learn to write it), or to the end of the example and its </s>. A token carries the loss when
  its bytes overlap an answer; </s> when the last answer is still open. Tokens are matched by
  their bytes, so the mask does not depend on how the tokenizer cut the markers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from vicuna import prompt, tokenizer
from vicuna.files import iter_lines, write_lines

# The text before an answer and the text that ends one, in the layout of vicuna.prompt.
ANSWER_START = prompt.section(prompt.RESPONSE, "")
ANSWER_END = prompt.STOP
# OpenNMT-py's placeholder pattern (response_patterns) for the single-round mark: the same
# marker as it stands in a corpus line (whose "\n" are stored as prompt.NEWLINE).
RESPONSE_PATTERN = prompt.to_line(ANSWER_START)

_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def piece_bytes(piece: str, specials: frozenset[str] = frozenset()) -> bytes:
    """What a sentencepiece piece stands for in the text, as bytes: "▁" is a space, byte
    fallback pieces ("<0x0A>") their byte; special tokens (<s>, </s>, the pad) nothing."""
    if piece in specials:
        return b""
    byte = _BYTE.fullmatch(piece)
    if byte:
        return bytes([int(byte.group(1), 16)])
    return piece.replace("\u2581", " ").encode("utf-8")


def vocab_bytes(pieces: Sequence[str], specials: Sequence[str]) -> list[bytes]:
    """piece_bytes of each id of a vocabulary (its pieces in id order)."""
    special = frozenset(specials)
    return [piece_bytes(p, special) for p in pieces]


def answer_spans(text: bytes, start: bytes = ANSWER_START.encode(),
                 end: bytes = ANSWER_END.encode()) -> list[tuple[int, int | None]]:
    """The answers of a text as byte ranges [a, b): each from right after `start` up to and
    including the next `end`; b is None for an answer that runs to the end of the text."""
    spans: list[tuple[int, int | None]] = []
    at = 0
    while (found := text.find(start, at)) != -1:
        a = found + len(start)
        stop = text.find(end, a)
        if stop == -1:
            spans.append((a, None))
            break
        spans.append((a, stop + len(end)))
        at = stop + len(end)
    return spans


def after_placeholder(ids: Sequence[int], pad: int) -> list[bool]:
    """OpenNMT-py's own mask (LossCompute.ignore_prompt) of an example with its placeholder:
    every token after the first pad, but pads."""
    first = list(ids).index(pad)
    return [i > first and t != pad for i, t in enumerate(ids)]


def answer_mask(ids: Sequence[int], surfaces: Sequence[bytes], *, pad: int, eos: int) -> list[bool]:
    """Whether each token of an example (its ids, then </s>, then maybe batch padding) carries
    the loss; see the module's docstring. `surfaces` is vocab_bytes of the vocabulary."""
    ids = list(ids)
    length = ids.index(eos) + 1 if eos in ids else len(ids)
    if pad in ids[:length]:  # OpenNMT-py's placeholder: a single-round example, as OpenNMT-py has it
        return after_placeholder(ids[:length], pad) + [False] * (len(ids) - length)
    pieces = [surfaces[t] for t in ids[:length]]
    text = b"".join(pieces)
    spans = answer_spans(text)
    mask, offset = [], 0
    for t, piece in zip(ids[:length], pieces, strict=True):
        lo, hi = offset, offset + len(piece)
        offset = hi
        if t == eos:
            mask.append(bool(spans) and spans[-1][1] is None)
        elif not piece:  # <unk>: inside an answer or not
            mask.append(any(a <= lo < (len(text) if b is None else b) for a, b in spans))
        else:
            mask.append(any(lo < (len(text) if b is None else b) and hi > a for a, b in spans))
    return mask + [False] * (len(ids) - length)


def bracketed(pieces: Sequence[str], mask: Sequence[bool]) -> str:
    """Pieces joined by spaces, each run of pieces that carries the loss in [brackets]."""
    out: list[str] = []
    inside = False
    for piece, on in zip(pieces, mask, strict=True):
        if on and not inside:
            out.append("[" + piece)
        elif not on and inside:
            out[-1] += "]"
            out.append(piece)
        else:
            out.append(piece)
        inside = on
    if inside:
        out[-1] += "]"
    return " ".join(out)


# --- What the samples show (`finetune_samples`) -----------------------------------------------

PAD_PIECE, EOS_PIECE = tokenizer.PAD, tokenizer.EOS  # OpenNMT-py's pad and end tokens
SPECIALS = (tokenizer.BOS, EOS_PIECE, PAD_PIECE, tokenizer.UNK)
SAMPLE_SUFFIX = ".loss"


def shown(line: str) -> str:
    """One line of OpenNMT-py's sample dump (the pieces the transforms give, without <s> and
    </s>), then </s>, with the pieces that carry the loss in [brackets]: the mask
    answer_mask gives the training."""
    pieces = [*line.split(" "), EOS_PIECE] if line else [EOS_PIECE]
    index: dict[str, int] = {}
    ids = [index.setdefault(p, len(index)) for p in pieces]
    surfaces = vocab_bytes(list(index), SPECIALS)
    mask = answer_mask(ids, surfaces, pad=index.get(PAD_PIECE, -1), eos=index[EOS_PIECE])
    return bracketed(pieces, mask)


def write_samples(sample_dir: str | Path) -> list[Path]:
    """Next to each corpus's dumped `<corpus>.sample.src`, `<corpus>.sample.src.loss`: its
    lines as `shown` shows them. Returns the files written."""
    written = []
    for src in sorted(Path(sample_dir).glob("*.src")):
        out = src.with_name(src.name + SAMPLE_SUFFIX)
        write_lines(out, [shown(line) for line in iter_lines(src)], force=True)
        written.append(out)
    return written
