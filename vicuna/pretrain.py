"""Short pretraining of the tiny reference LLaMA: next-token prediction on packed text."""

from __future__ import annotations

import math

import sentencepiece as spm
import torch
from tqdm import tqdm

from vicuna.llama import ModelArgs, Transformer


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
