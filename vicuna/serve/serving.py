"""Answers for many clients at once on one engine (vicuna.serve.engines): the API server's worker.

One worker thread owns the engine; a request hands it Sequences (one per answer it wants) and
reads Events back through each Sequence's `emit`, called from that thread. The sequences
waiting when the worker is free are generated together, up to `max_batch` of them (the ct2
engine: one generate_batch per set of sampling options; OpenNMT-py's engine is not
thread-safe: one at a time), each followed by its own stops.Cutter: streamed as it grows where
the engine streams, stopped on its own (its max tokens, the end token, a stop string, or its
client gone), so a long answer does not hold the others' results back.

Whatever else is in a batch, a sequence's answer is the one it gets alone: the engines keep
prompts they cannot batch safely apart (vicuna/serve/engines/ct2.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from vicuna.serve import decoding, engines, stops

log = logging.getLogger(__name__)


@dataclass
class Event:
    """A sequence's answer so far, or its end (finish_reason set), or its failure (error set)."""
    index: int
    text: str = ""
    tokens: int = 0  # tokens generated so far, the end token not counted
    finish_reason: str | None = None  # "stop" (end token or a stop string) or "length"
    error: str | None = None


@dataclass
class Sequence:
    """One answer to generate (one choice of one request)."""
    text: str  # the prompt, as text
    decoding: dict  # options-file keys (decoding.SAMPLING, SEED); max_length counts new tokens
    emit: Callable[[Event], None]  # called from the worker thread
    stops: tuple[str, ...] = ()  # the client's stop strings, besides the chat's own
    index: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)


class Worker:
    """A thread that takes the waiting sequences, up to `max_batch` at a time, and generates
    them (`_generate`; the engine's own by default)."""

    def __init__(self, engine: engines.Engine | None, max_batch: int = 1,
                 count_tokens: Callable[[str], int] | None = None,
                 decoding: dict | None = None) -> None:
        self.engine, self.max_batch = engine, max_batch
        self.count_tokens = count_tokens or engine.count_tokens  # prompt text -> tokens read
        self.decoding = decoding if decoding is not None else engine.defaults  # the defaults
        self._queue: queue.Queue[Sequence | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="engine", daemon=True)
        self._thread.start()

    def submit(self, sequences: list[Sequence]) -> None:
        for seq in sequences:
            self._queue.put(seq)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    seq = self._queue.get_nowait()
                except queue.Empty:
                    break
                if seq is None:  # closing: finish this batch first
                    self._queue.put(None)
                    break
                batch.append(seq)
            batch = [seq for seq in batch if not seq.cancelled.is_set()]
            if not batch:
                continue
            try:
                self._generate(batch)
            except Exception:  # one bad batch must not stop the server: its clients are told
                log.exception("generation failed for a batch of %d", len(batch))
                for seq in batch:
                    seq.emit(Event(seq.index, error="generation failed (see the server's log)"))

    def _generate(self, batch: list[Sequence]) -> None:
        groups: dict[tuple, list[Sequence]] = {}  # one engine call per set of sampling options
        for seq in batch:
            sampling = tuple(sorted((k, v) for k, v in seq.decoding.items() if k != "max_length"))
            if decoding.SEED in seq.decoding:  # alone: its draws must not depend on the others
                sampling += (("sequence", id(seq)),)
            groups.setdefault(sampling, []).append(seq)
        for group in groups.values():
            log.info("batch of %d sequences", len(group))
            streams = [_Stream(seq) for seq in group]
            # max_length is the longest asked for; each sequence stops at its own
            longest = max(seq.decoding["max_length"] for seq in group)
            self.engine.generate([seq.text for seq in group],
                                 {**group[0].decoding, "max_length": longest}, streams)
            for s in streams:
                s.finish()


class _Stream(stops.Cutter):
    """A sequence's Cutter that emits its answer as it grows, and its end."""

    def __init__(self, seq: Sequence) -> None:
        super().__init__(seq.stops, seq.decoding["max_length"], cancelled=seq.cancelled.is_set)
        self.seq = seq
        self.finished = False

    def update(self, text: str, tokens: int) -> bool:
        done = super().update(text, tokens)
        if done:  # now, not when the batch ends: a long answer must not hold this one back
            self.finish()
        elif self.changed:
            self.seq.emit(Event(self.seq.index, self.shown, tokens))
        return done

    def finish(self) -> None:
        """Its last Event, once: the answer and why it ended (nothing for a client gone)."""
        self.end()
        if self.finished:
            return
        self.finished = True
        if self.finish_reason == "cancelled":  # the client is gone: its place is free
            log.info("sequence %d stopped: client gone after %d tokens", self.seq.index,
                     self.tokens)
            return
        # engines that recount tokens from text (py) may count more than were generated
        tokens = min(self.tokens, self.seq.decoding["max_length"])
        self.seq.emit(Event(self.seq.index, self.text(), tokens, self.finish_reason))


def load(mode: str, options_file, max_batch: int | None = None) -> Worker:
    """The worker of one mode's engine, configured by its translate_opts_<mode>.yaml;
    `max_batch`: the most sequences generated together, the options file's batch_size by
    default, where the engine batches requests (not `py`: one at a time)."""
    engine = engines.load(mode, options_file)
    if not engine.batches_requests:
        return Worker(engine, 1)
    return Worker(engine, max_batch or engine.opts.get("batch_size", 16))
