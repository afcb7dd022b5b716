"""Short pretraining of the tiny reference LLaMA: next-token prediction on packed text, and the
texts its tokenizer learns from."""

from __future__ import annotations

import math
from pathlib import Path

import sentencepiece as spm
import torch
from tqdm import tqdm

from vicuna import prompt
from vicuna.data import flatten
from vicuna.files import iter_lines
from vicuna.weights.llama import ModelArgs, Transformer


def record_text(record: object) -> str:
    """One alpaca or ShareGPT record (told apart by its `conversations`) laid out as for
    training, with vicuna.data.flatten's checks."""
    sharegpt = isinstance(record, dict) and "conversations" in record
    return (flatten.sharegpt_text if sharegpt else flatten.alpaca_text)(record)


def tokenizer_texts(paths: list[Path]) -> list[str]:
    """The texts the tokenizer learns from: the instruction data (.json) as laid out for
    training (template words included, as LLaMA's tokenizer knows English) and the lines of
    text corpora (newlines as ｟newline｠). A bad record is an error naming file and index."""
    texts: list[str] = []
    for path in map(Path, paths):
        if path.suffix != ".json":
            texts += [prompt.from_line(line) for line in iter_lines(path)]
            continue
        for index, record in enumerate(flatten.read_records(path)):
            try:
                texts.append(record_text(record))
            except flatten.RecordError as e:
                raise flatten.RecordError(f"{path}: {flatten.record_label(index, record)}: {e}") from None
    return texts


def pack(sp: spm.SentencePieceProcessor, lines: list[str], seq_len: int) -> torch.Tensor:
    """<s> line </s> <s> line </s> ... cut into rows of seq_len + 1 tokens."""
    ids: list[int] = []
    for line in lines:
        ids += [sp.bos_id(), *sp.encode(line), sp.eos_id()]
    rows = len(ids) // (seq_len + 1)
    return torch.tensor(ids[: rows * (seq_len + 1)]).view(rows, seq_len + 1)


def pretrain(
    args: ModelArgs,
    sp: spm.SentencePieceProcessor,
    lines: list[str],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seq_len: int,
    seed: int,
) -> tuple[Transformer, list[float]]:
    torch.manual_seed(seed)
    model = Transformer(args)
    data = pack(sp, lines, seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="pretrain", unit="step", mininterval=5):
        rows = data[torch.randint(len(data), (batch_size,), generator=gen)]
        logits = model(rows[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model.eval(), losses
