"""Answers for many clients at once on one model: the API server's engines (vicuna.api).

One worker thread owns the model; a request hands it Sequences (one per answer it wants) and
reads Events back through each Sequence's `emit`, called from that thread.

- `ct2`: CTranslate2's Generator. The sequences waiting when the worker is free are generated
  together, one generate_batch call per set of sampling options; each is streamed token by
  token through the call's callback and stopped on its own (its max tokens, the end token, a
  stop string, or its client gone), so a long answer does not hold the others' results back.
- `py`: OpenNMT-py's engine, which is not thread-safe and does not stream: one sequence at a
  time, in order of arrival, each answer in one piece.

Answers are cut as the chatbot cuts them (vicuna.prompt.until_stop), then at the client's own
stop strings.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vicuna import chat, decoding, inference, prompt

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
    decoding: dict  # options-file keys (decoding.SAMPLING); max_length counts new tokens
    emit: Callable[[Event], None]  # called from the worker thread
    stops: tuple[str, ...] = ()  # the client's stop strings, besides the chat's own
    index: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)


def until_stops(text: str, stops: tuple[str, ...] = (), hold: bool = True) -> tuple[str, bool]:
    """prompt.until_stop, then cut at the first of `stops` too: (answer, whether it stopped).

    While `hold` (the answer is still growing), a trailing beginning of a stop string is held
    back, so that a stream never shows text that it takes away later. The layout's own STOP is
    held back at the end too, as the chatbot shows answers.
    """
    answer, stopped = prompt.until_stop(text)
    hits = [i for s in stops if (i := text.find(s)) != -1]
    if hits and (not stopped or min(hits) < len(answer)):
        return text[:min(hits)], True
    if hold and not stopped:
        held = max((n for s in stops for n in range(1, len(s)) if answer.endswith(s[:n])),
                   default=0)
        answer = answer[:len(answer) - held]
    return answer, stopped


class Engine:
    """A worker thread that takes the waiting sequences, up to `max_batch` at a time."""

    max_batch = 1

    def __init__(self, count_tokens: Callable[[str], int], decoding: dict) -> None:
        self.count_tokens = count_tokens  # prompt text -> tokens the model reads
        self.decoding = decoding  # the options file's decoding settings: the defaults
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
        raise NotImplementedError


class _Progress:
    """One sequence's tokens inside a CTranslate2 batch; `add` says whether to stop it."""

    def __init__(self, seq: Sequence, sp) -> None:
        self.seq, self.sp = seq, sp
        self.ids: list[int] = []
        self.shown = ""
        self.done = False

    def add(self, token_id: int) -> bool:
        if self.done:
            return True
        if self.seq.cancelled.is_set():  # the client is gone: free its place in the batch
            log.info("sequence %d stopped: client gone after %d tokens", self.seq.index,
                     len(self.ids))
            self.done = True
            return True
        if token_id == self.sp.eos_id():
            self.finish("stop")
            return True
        self.ids.append(token_id)
        # Decode all ids each time: a character can span several byte-fallback pieces.
        answer, stopped = until_stops(self.sp.decode(self.ids), self.seq.stops)
        if stopped or len(self.ids) >= self.seq.decoding["max_length"]:
            self.finish("stop" if stopped else "length")
            return True
        if answer != self.shown:  # held-back pieces change nothing for the client
            self.shown = answer
            self.seq.emit(Event(self.seq.index, answer, len(self.ids)))
        return False

    def finish(self, reason: str | None = None) -> None:
        """The end; without a reason, generate_batch ended it (the end token or max_length)."""
        if self.done:
            return
        self.done = True
        if reason is None:
            reason = "length" if len(self.ids) >= self.seq.decoding["max_length"] else "stop"
        answer, _ = until_stops(self.sp.decode(self.ids), self.seq.stops, hold=False)
        self.seq.emit(Event(self.seq.index, answer, len(self.ids), finish_reason=reason))


class Ct2Engine(Engine):
    def __init__(self, opts: dict, max_batch: int) -> None:
        self.generator, self.sp = inference.load_ct2(opts)
        self.opts = opts
        self.max_batch = max_batch
        super().__init__(chat.token_counter(self.sp), decoding.defaults(opts))

    def _sampling(self, seq: Sequence) -> dict:
        args = decoding.ct2_args({**self.opts, **seq.decoding})
        return {key: args[key] for key in ("min_length", "sampling_topk", "sampling_topp",
                                           "sampling_temperature")}

    def _generate(self, batch: list[Sequence]) -> None:
        groups: dict[tuple, list[Sequence]] = {}
        for seq in batch:
            groups.setdefault(tuple(self._sampling(seq).items()), []).append(seq)
        for group in groups.values():
            self._generate_group(group)

    def _generate_group(self, group: list[Sequence]) -> None:
        log.info("batch of %d sequences", len(group))
        progress = [_Progress(seq, self.sp) for seq in group]
        # beam_size 1, as the chatbot's generate_tokens: CTranslate2 only streams greedy search
        # and sampling. max_length is the longest asked for; each sequence stops at its own.
        self.generator.generate_batch(
            [inference.prompt_tokens(self.sp, seq.text) for seq in group],
            max_length=max(seq.decoding["max_length"] for seq in group),
            include_prompt_in_result=False, beam_size=1,
            callback=lambda step: progress[step.batch_id].add(step.token_id),
            **self._sampling(group[0]),
        )
        for p in progress:
            p.finish()


class PyEngine(Engine):
    max_batch = 1  # OpenNMT-py's engine holds per-call decoding settings: one call at a time

    def __init__(self, options_file: str | Path, opts: dict) -> None:
        from vicuna import tokenizer

        self.generate = inference.py_engine(options_file)
        super().__init__(chat.token_counter(tokenizer.load(opts["src_subword_model"])),
                         decoding.defaults(opts))

    def _generate(self, batch: list[Sequence]) -> None:
        [seq] = batch
        [answer] = self.generate([prompt.to_line(seq.text)], seq.decoding)
        text, stopped = until_stops(prompt.from_line(answer.text), seq.stops, hold=False)
        # OpenNMT-py gives back text: its tokens are counted again, as batch inference does,
        # which can differ from what the model generated (byte pieces, merges); never more.
        tokens = min(answer.tokens, seq.decoding["max_length"])
        full = stopped or tokens < seq.decoding["max_length"]
        seq.emit(Event(seq.index, text, tokens, "stop" if full else "length"))


def load(mode: str, options_file: str | Path, max_batch: int | None = None) -> Engine:
    """The engine of one mode, configured by its translate_opts_<mode>.yaml; `max_batch`
    (ct2): the most sequences generated together, the options file's batch_size by default."""
    opts = inference.load_options(options_file)
    if mode in inference.ENGINES:
        inference.check_model(mode, opts, options_file)  # a named error, not an engine's
    if mode == "ct2":
        return Ct2Engine(opts, max_batch or opts.get("batch_size", 16))
    if mode == "py":
        return PyEngine(options_file, opts)
    raise ValueError(f"inference mode {mode!r}: expected one of {sorted(inference.ENGINES)}")
