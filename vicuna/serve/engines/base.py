"""What every engine is: one loaded model of one inference mode, configured by its options file,
with the same small interface for everyone who needs a model (batch inference, the chatbot,
the API, the evaluation, the benchmarks).

Texts in, texts out: prompts and answers hold real newlines (corpus lines, with ｟newline｠,
are the callers' business). The model reads a prompt as <s> + its sentencepiece pieces, in
every mode (`prompt_ids`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from vicuna import tokenizer
from vicuna.serve import decoding, stops


def prompt_pieces(sp, text: str) -> list[str]:
    """What the model reads for a prompt text, in every mode: <s> + sentencepiece pieces."""
    return [tokenizer.BOS, *sp.encode(text, out_type=str)]


def cpu_threads(wanted: int) -> int:
    """An engine's CPU threads (ct2, gguf): as configured, never more than this process may
    use (a SLURM job's CPUs, a laptop's cores); 0 means all of those. CTranslate2's own 0
    means 4 threads whatever the machine has, oversubscribed (and slower) on 2 cores."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(wanted, available or 1) if wanted > 0 else (available or 1)


def count_tokens(sp, text: str) -> int:
    """How many tokens the model reads for a prompt text, <s> included."""
    return 1 + len(sp.encode(text))


@dataclass
class Answer:
    text: str  # as generated: up to </s> or max_length, not cut at the stop rule
    score: float
    tokens: int
    truncated: dict | None = None  # set by batch inference when the prompt was cut to fit


class Watcher(Protocol):
    """Follows one answer while it is generated (a stops.Cutter, or one that also emits)."""

    def update(self, text: str, tokens: int) -> bool: ...  # True: stop generating it
    def end(self) -> None: ...  # it ended by itself (the end token, the length limit)


class Engine:
    """The interface; vicuna/serve/engines/py.py, ct2.py and gguf.py implement it, registered by
    `mode`."""

    mode: ClassVar[str]
    # config.yaml `inference` keys this mode's options file takes besides decoding.KEYS
    config_keys: ClassVar[tuple[str, ...]] = ()
    # whether concurrent requests (with their own settings) may share one generate call
    batches_requests: ClassVar[bool] = True
    # why a per-call seed cannot make a sampled answer reproducible in this mode (None: it can)
    seed_unsupported: ClassVar[str | None] = None
    # the model's sliding window (Mistral's: a token sees itself and window - 1 before it), None
    # for none; check_model sets it, and each mode refuses what it cannot compute within it
    window: int | None = None

    def __init__(self, opts: dict, source: str | Path) -> None:
        self.opts, self.source = opts, source
        self.check_model()
        self.sp = tokenizer.load(opts["src_subword_model"])
        model_vocab, pieces = self.vocabulary_size(), self.sp.get_piece_size()
        if model_vocab != pieces:  # nonsense answers, exit 0, otherwise
            raise ValueError(f"{source}: the tokenizer {opts['src_subword_model']} has {pieces} "
                             f"pieces but the model {opts['model']} has a vocabulary of "
                             f"{model_vocab}: give the tokenizer the model was converted with "
                             f"(src_subword_model)")
        self.defaults = decoding.defaults(opts)  # per-answer settings: the callers' defaults

    # --- what each mode provides -----------------------------------------------------------
    @staticmethod
    def file_options(inference: dict, tokenizer_model: str) -> dict:
        """This mode's entries of its options file, from config.yaml's `inference` section."""
        raise NotImplementedError

    def check_model(self) -> None:
        """A named error for a model of the wrong kind, before the engine's own traceback."""
        raise NotImplementedError

    def vocabulary_size(self) -> int:
        raise NotImplementedError

    def generate(self, prompts: list[str], settings: dict | None = None,
                 watchers: Sequence[Watcher] | None = None) -> list[Answer]:
        """Answers to `prompts`, one batch (split as the engine needs); `settings`
        (decoding.SAMPLING keys, and decoding.SEED where the mode honours it) override the
        options for this call. Each of `watchers` follows
        one answer: as it grows where the engine streams (and may stop it early), else once,
        whole; then `end()`."""
        raise NotImplementedError

    def stream(self, prompt: str, settings: dict | None = None) -> Iterator[str]:
        """One answer, as shown so far (cut at the chat's stop rule), piece by piece where the
        engine streams, else in one piece."""
        cutter = stops.Cutter()
        self.generate([prompt], settings, [cutter])
        yield cutter.text()

    def logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """log P(token t | tokens before it) for t = 1 .. len - 1 of each id sequence (each
        starting with <s>): the log-likelihood held-out losses and benchmarks need."""
        raise NotImplementedError

    def next_logprobs(self, sequences: list[list[int]], candidates: list[int]
                      ) -> list[list[float]]:
        """log P(c | sequence) for each token c of `candidates` after each id sequence (each
        starting with <s>). Here: each sequence scored once per candidate; an engine that can
        reads all candidates off one pass (py)."""
        n = len(candidates)
        scores = self.logprobs([seq + [c] for seq in sequences for c in candidates])
        return [[scores[i * n + j][-1] for j in range(n)] for i in range(len(sequences))]

    def close(self) -> None:
        """Let the model go."""

    # --- shared ------------------------------------------------------------------------------
    def shown(self, tokens: Iterator[int]) -> Iterator[str]:
        """A stream's texts as the chatbot shows them, from the engine's generated token ids:
        each time the shown text changes, up to the end token or the stop rule (the caller
        closes its decoding when this ends or is closed)."""
        cutter = stops.Cutter()
        ids: list[int] = []
        for token in tokens:
            if token == self.sp.eos_id():
                return
            ids.append(token)
            done = cutter.update(self.sp.decode(ids), len(ids))
            if cutter.changed:
                yield cutter.shown
            if done:
                return

    def check_window(self, what: str, tokens: int, why: str) -> None:
        """A ValueError where `tokens` pass the model's sliding window, which this mode does
        not keep there (`why`): refused, never computed as another model."""
        if self.window is not None and tokens > self.window:
            raise ValueError(f"{what}: {tokens} tokens pass the model's sliding window of "
                             f"{self.window}: {why}")

    def prompt_pieces(self, text: str) -> list[str]:
        return prompt_pieces(self.sp, text)

    def prompt_ids(self, text: str) -> list[int]:
        return [self.sp.bos_id(), *self.sp.encode(text)]

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.sp, text)
