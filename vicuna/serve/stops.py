"""Where a generated answer stops, written once for every engine and every caller: the prompt
layout's own stop (vicuna.prompt.until_stop: the model opening a next round), a client's stop
strings, the end token and the answer's token budget.

`until_stops` cuts a text; a `Cutter` follows one answer as it grows (the chatbot's stream, the
API's batched streams, any engine's generation feeds one) and says when it has ended.
"""

from __future__ import annotations

from collections.abc import Callable

from vicuna import prompt


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


class Cutter:
    """One answer as it grows, and what may be shown of it so far.

    The engine calls `update(text, tokens)` with the answer decoded so far (decode all ids each
    time: a character can span several byte-fallback pieces) and stops generating it when that
    returns True: a stop (the layout's or the client's), `max_length` tokens, or `cancelled()`
    (its reader is gone). `end()` says that generation ended by itself (the end token, the
    engine's length limit). `shown` is the answer to show while it grows (`changed`: the last
    update changed it), `text()` the final answer; `finish_reason` is "stop", "length" or
    "cancelled" once it has ended.
    """

    def __init__(self, stops: tuple[str, ...] = (), max_length: int | None = None,
                 cancelled: Callable[[], bool] | None = None) -> None:
        self.stops, self.max_length, self.cancelled = stops, max_length, cancelled
        self.raw = ""
        self.tokens = 0
        self.shown = ""
        self.changed = False
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def update(self, text: str, tokens: int) -> bool:
        self.changed = False
        if self.done:
            return True
        if self.cancelled is not None and self.cancelled():
            self.finish_reason = "cancelled"
            return True
        self.raw, self.tokens = text, tokens
        answer, stopped = until_stops(text, self.stops)
        if answer != self.shown:  # held-back pieces change nothing for the reader
            self.shown, self.changed = answer, True
        if stopped:
            self.finish_reason = "stop"
        elif self.max_length is not None and tokens >= self.max_length:
            self.finish_reason = "length"
        return self.done

    def end(self) -> None:
        if not self.done:
            at_limit = self.max_length is not None and self.tokens >= self.max_length
            self.finish_reason = "length" if at_limit else "stop"

    def text(self) -> str:
        """The answer as finally shown: cut at the stops, nothing of the client's held back."""
        return until_stops(self.raw, self.stops, hold=False)[0]
