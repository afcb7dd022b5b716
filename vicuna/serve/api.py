"""An OpenAI-compatible HTTP API on one model: /v1/chat/completions, /v1/completions and
/v1/models, answered by a vicuna.serve.serving engine.

- Chat messages become the prompt as in the chatbot: vicuna.serve.chat.build_prompt lays the rounds
  out with vicuna.prompt.conversation (the ShareGPT flattening) and leaves the oldest whole
  rounds out when prompt + max_tokens would not fit the context length; the response's
  `x-dropped-rounds` header says how many. System (and "developer") messages are handled as
  the server's `system_messages` says (SYSTEM_MESSAGES): left out by default, as the model was
  finetuned with one fixed task line, with the `x-ignored-system-messages` header counting them.
- `seed` makes a sampled answer the same each time, alone or beside other requests, in the modes
  that can (the engine's `seed_unsupported` says why not: a 400 naming `seed` and the mode).
- OpenAI's other fields are accepted where they change nothing here (their neutral values, or
  ids that are only recorded by OpenAI) and refused by name otherwise (OPENAI_FIELDS).
- Decoding starts from the options file (as the chatbot's sliders do): max_tokens replaces its
  max_length, temperature, top_p and top_k (beyond OpenAI, as in the chatbot: 1 greedy, 0 every
  token) its sampling, with OpenAI's meaning of temperature (vicuna.serve.decoding.requested): 0 is
  greedy, above 0 samples even where the options file is greedy (the workflow's top-k 1).
- A completion prompt with nothing in it is refused (400, `param` naming it): the model would
  answer nothing in particular.
- Answers are cut at the prompt layout's stop rule (vicuna.prompt.until_stop) and at the
  client's `stop` strings: finish_reason "stop" then, or at the end token; "length" when
  max_tokens ran out.
- Every malformed request gets a 4xx with OpenAI's error shape, {"error": {"message", "type",
  "param", "code"}}; nothing a client sends reaches it as a traceback or stops the server.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from vicuna import prompt
from vicuna.serve import chat, engines
from vicuna.serve import decoding as meanings
from vicuna.serve.serving import Event, Sequence, Worker

log = logging.getLogger(__name__)

MAX_CHOICES = 8  # n, times the prompts of one /v1/completions request
MAX_STOPS = 4  # as OpenAI
MAX_STOP_CHARS = 256  # each stop string is looked for after every token
MAX_MESSAGES = 256  # build_prompt counts the tokens again for each round it drops

# What a chat's system messages become: left out (the prompt keeps the task line the model was
# finetuned with; the x-ignored-system-messages header counts them), the prompt's task line
# (their texts joined by blank lines), or refused (400).
SYSTEM_MESSAGES = ("ignore", "task", "refuse")
SYSTEM_ROLES = ("system", "developer")  # OpenAI's newer name for the same thing

ANY = object()  # a field accepted whatever its value: it changes nothing here
CHAT, TEXT = "chat", "text"  # /v1/chat/completions, /v1/completions
# OpenAI's request fields this server does not implement (those of the `openai` client's
# chat.completions.create and completions.create, 1.x to 3.57): {field: (the endpoints that take
# it, the values accepted because they change nothing, why others are refused)}.
OPENAI_FIELDS: dict[str, tuple[tuple[str, ...], tuple, str]] = {
    "frequency_penalty": ((CHAT, TEXT), (None, 0), "no repetition penalties in this decoding"),
    "presence_penalty": ((CHAT, TEXT), (None, 0), "no repetition penalties in this decoding"),
    "logit_bias": ((CHAT, TEXT), (None, {}), "no logit biases in this decoding"),
    "logprobs": ((CHAT, TEXT), (None, False), "log-probabilities are not returned"),
    "top_logprobs": ((CHAT,), (None, 0), "log-probabilities are not returned"),
    "tools": ((CHAT,), (None, []), "the model was not finetuned to call tools"),
    "tool_choice": ((CHAT,), (None, "none"), "the model was not finetuned to call tools"),
    "functions": ((CHAT,), (None, []), "the model was not finetuned to call functions"),
    "function_call": ((CHAT,), (None, "none"), "the model was not finetuned to call functions"),
    "parallel_tool_calls": ((CHAT,), ANY, ""),
    "response_format": ((CHAT,), (None, {"type": "text"}), "answers are plain text"),
    "modalities": ((CHAT,), (None, ["text"]), "answers are text only"),
    "audio": ((CHAT,), (None,), "answers are text only"),
    "prediction": ((CHAT,), (None,), "no predicted outputs"),
    "reasoning_effort": ((CHAT,), (None,), "not a reasoning model"),
    "verbosity": ((CHAT,), (None,), "the answer's length is max_tokens"),
    "web_search_options": ((CHAT,), (None,), "no web search"),
    "moderation": ((CHAT,), (None,), "no moderation here"),
    "store": ((CHAT,), (None, False), "this server stores no completions"),
    "metadata": ((CHAT,), ANY, ""),
    "service_tier": ((CHAT,), (None, "auto", "default"), "one service tier here"),
    "prompt_cache_key": ((CHAT,), ANY, ""),
    "prompt_cache_options": ((CHAT,), ANY, ""),
    "prompt_cache_retention": ((CHAT,), ANY, ""),
    "safety_identifier": ((CHAT,), ANY, ""),
    "best_of": ((TEXT,), (None, 1), "one answer per choice: ask for n instead"),
    "echo": ((TEXT,), (None, False), "the prompt is not echoed"),
    "suffix": ((TEXT,), (None, ""), "no insertion: the answer follows the prompt"),
}


@dataclass
class Settings:
    model_name: str  # the id /v1/models lists and requests name
    max_context_length: int  # prompt tokens + max_tokens, at most
    api_key: str | None = None  # when set, every request needs "Authorization: Bearer <key>"
    max_request_bytes: int = 1 << 20
    max_pending: int = 64  # sequences waiting or being generated; more are refused (429)
    system_messages: str = "ignore"  # one of SYSTEM_MESSAGES


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (
            status, message, param, code, kind)


def error_body(e: ApiError) -> dict:
    return {"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.code}}


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(error_body(e), status_code=e.status)


# ---- requests: every field typed, unknown ones refused -----------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None  # the participant's name: accepted, unused

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(
            part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # OpenAI pads chunks against side channels: unused


class _Generation(_Strict):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)  # beyond OpenAI: the chatbot's (1 greedy, 0 all)
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None  # OpenAI's end-user id: accepted, unused
    seed: int | None = None  # a sampled answer's seed (py mode; a 400 in the others)

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOPS or any(not 0 < len(s) <= MAX_STOP_CHARS for s in stops):
            raise ValueError(f"at most {MAX_STOPS} stop strings, each of 1 to "
                             f"{MAX_STOP_CHARS} characters")
        return stop

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatRequest(_Generation):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens


class CompletionRequest(_Generation):
    prompt: str | list[str]


def openai_fields(body: dict, endpoint: str) -> dict:
    """The body without OpenAI's fields that change nothing here; a 400 naming the first field
    this server does not implement with a value that would change the answer."""
    kept = dict(body)
    for field, (endpoints, neutral, why) in OPENAI_FIELDS.items():
        if field not in kept or endpoint not in endpoints:
            continue
        value = kept.pop(field)
        if neutral is not ANY and not any(_same(value, n) for n in neutral):
            raise ApiError(400, f"{field} is not supported by this server ({why}): leave it "
                           f"out{_neutral(neutral)}", field, "unsupported_parameter")
    return kept


def _same(value, neutral) -> bool:
    """JSON's equality: 0 and 0.0 are the same, false and 0 are not."""
    return value == neutral and isinstance(value, bool) == isinstance(neutral, bool)


def _neutral(values: tuple) -> str:
    shown = [json.dumps(v) for v in values if v is not None]
    return f" or send {' or '.join(shown)}" if shown else ""


def parse(body: dict, schema: type[_Strict]) -> _Strict:
    """The request, or a 400 naming the first wrong field."""
    body = openai_fields(body, CHAT if schema is ChatRequest else TEXT)
    try:
        return schema.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            message = f"unknown or unsupported field {param!r}"
        elif first["type"] == "missing":
            message = f"missing required field {param!r}"
        else:
            message = f"{param}: {first['msg']}"
        raise ApiError(400, message, param) from None


async def read_json(request: Request, limit: int) -> dict:
    """The body as a JSON object, read no further than `limit` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is over {limit} bytes")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


# ---- from a request to sequences ---------------------------------------------------------

def chat_rounds(messages: list[Message]) -> tuple[list[tuple[str, str]], str]:
    """The user and assistant messages as (user, assistant) rounds and the last user message
    (system messages are the caller's: `system_texts`)."""
    turns = [m for m in messages if m.role not in SYSTEM_ROLES]
    roles = [m.role for m in turns]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
    if not turns or roles != expected or roles[-1] != "user":
        raise ApiError(400, "messages must alternate user and assistant, starting and ending "
                       "with a user message (system messages anywhere)", "messages")
    texts = [m.text() for m in turns]
    return list(zip(texts[:-1:2], texts[1:-1:2], strict=True)), texts[-1]


def task_line(messages: list[Message], handling: str) -> tuple[str, int]:
    """The prompt's task line and how many system messages were left out of the prompt, as
    `handling` (one of SYSTEM_MESSAGES) says."""
    system = [m.text() for m in messages if m.role in SYSTEM_ROLES]
    if not system:
        return prompt.TASK, 0
    if handling == "refuse":
        raise ApiError(400, "system messages are refused by this server (its system_messages "
                       "setting): the model was finetuned with one fixed task line; send user "
                       "and assistant messages only", "messages", "system_message_unsupported")
    if handling == "task" and any(text.strip() for text in system):
        return prompt.SEP.join(text.strip() for text in system if text.strip()), 0
    return prompt.TASK, len(system) if handling == "ignore" else 0


def max_new_tokens(req: _Generation, settings: Settings, default: int) -> int:
    asked = [v for v in (req.max_tokens, getattr(req, "max_completion_tokens", None)) if v]
    if len(set(asked)) > 1:
        raise ApiError(400, "max_tokens and max_completion_tokens differ: send one",
                       "max_tokens")
    limit = settings.max_context_length - 1
    if asked and asked[0] > limit:
        raise ApiError(400, f"max_tokens is {asked[0]}, but the context length "
                       f"{settings.max_context_length} leaves room for {limit} at most",
                       "max_tokens")
    return asked[0] if asked else min(default, limit)


def decoding(req: _Generation, defaults: dict, max_length: int,
             engine: engines.Engine | None) -> dict:
    """The options file's decoding, with what the request sets, as OpenAI means it
    (vicuna.serve.decoding.requested), as options-file keys; with the request's seed where it
    samples (a greedy answer is the same every time), or a 400 where the mode cannot honour
    it."""
    dec = meanings.requested(defaults, max_length=max_length, temperature=req.temperature,
                             top_k=req.top_k, top_p=req.top_p)
    if req.seed is None or not meanings.samples(dec):
        return dec
    why = engine.seed_unsupported if engine is not None else None
    if why:
        raise ApiError(400, f"seed: the {engine.mode} mode cannot make a sampled answer "
                       f"reproducible ({why}); send temperature 0 for the greedy answer, or "
                       f"serve in a mode that can (py)", "seed", "unsupported_parameter")
    return {**dec, meanings.SEED: req.seed}


# ---- generation, seen from the event loop -------------------------------------------------

class Generation:
    """The sequences of one request on the engine; iterate for their Events, close to cancel."""

    def __init__(self, app_state, prompts: list[str], dec: dict, stops: tuple[str, ...],
                 n: int) -> None:
        self.state = app_state
        if self.state.pending + len(prompts) * n > self.state.settings.max_pending:
            raise ApiError(429, "too many requests waiting: try again later",
                           code="rate_limit_exceeded", kind="rate_limit_error")
        loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:  # from the engine's thread
            try:
                loop.call_soon_threadsafe(self.events.put_nowait, event)
            except RuntimeError:  # the loop is closed: the server is stopping
                pass

        # choice j of a seeded request samples with seed + j: n different answers, each the
        # same every time
        self.sequences = [Sequence(text, _choice_seed(dec, j), emit, stops, index=i * n + j)
                          for i, text in enumerate(prompts) for j in range(n)]
        self.state.pending += len(self.sequences)
        self.closed = False
        self.finals_seen: list[Event] = []  # the finishing Events streamed so far
        self.state.engine.submit(self.sequences)

    async def __aiter__(self) -> AsyncIterator[Event]:
        open_ = len(self.sequences)
        try:
            while open_:
                event = await self.events.get()
                if event.finish_reason or event.error:
                    open_ -= 1
                yield event
        finally:
            self.close()

    def close(self) -> None:
        """Done, or the client is gone: sequences still running are let go by the engine."""
        if not self.closed:
            self.closed = True
            for seq in self.sequences:
                seq.cancelled.set()
            self.state.pending -= len(self.sequences)

    async def finals(self) -> list[Event]:
        """Every sequence's last Event, in index order (non-streamed answers)."""
        last: dict[int, Event] = {}
        try:
            async for event in self:
                if event.error:
                    raise ApiError(500, event.error, kind="server_error")
                last[event.index] = event
        finally:
            self.close()  # an error leaves the iteration suspended: let the others go now
        return [last[i] for i in sorted(last)]


def _choice_seed(dec: dict, choice: int) -> dict:
    if meanings.SEED not in dec:
        return dec
    return {**dec, meanings.SEED: dec[meanings.SEED] + choice}


class EventStream(StreamingResponse):
    """Server-sent events of one Generation that stop, and so let the engine go, as soon as the
    client leaves: the disconnect is watched for even while no token is coming."""

    def __init__(self, content: AsyncIterator[str], gen: Generation, **kwargs) -> None:
        super().__init__(content, media_type="text/event-stream", **kwargs)
        self.gen = gen

    async def __call__(self, scope, receive, send) -> None:
        streaming = asyncio.ensure_future(self.stream_response(send))
        listening = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, listening):
                task.cancel()
            results = await asyncio.gather(streaming, listening, return_exceptions=True)
            await self.body_iterator.aclose()
            self.gen.close()  # also when the stream never started
        if isinstance(results[0], Exception) and not isinstance(results[0], OSError):
            log.error("stream failed", exc_info=results[0])


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def usage(prompt_tokens: int, finals: list[Event]) -> dict:
    completion = sum(e.tokens for e in finals)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


# ---- the endpoints -------------------------------------------------------------------------

def check_key(request: Request) -> None:
    key = request.app.state.settings.api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise ApiError(401, "missing or incorrect API key (Authorization: Bearer <key>)",
                       code="invalid_api_key")


def model_card(settings: Settings, created: int) -> dict:
    return {"id": settings.model_name, "object": "model", "created": created,
            "owned_by": "vicuna-workflow"}


async def list_models(request: Request) -> JSONResponse:
    check_key(request)
    state = request.app.state
    return JSONResponse({"object": "list", "data": [model_card(state.settings, state.created)]})


async def get_model(request: Request) -> JSONResponse:
    check_key(request)
    state = request.app.state
    check_model(request.path_params["model"], state.settings)
    return JSONResponse(model_card(state.settings, state.created))


def check_model(name: str, settings: Settings) -> None:
    if name != settings.model_name:
        raise ApiError(404, f"the model {name!r} does not exist: this server has "
                       f"{settings.model_name!r}", "model", "model_not_found")


async def generation_request(request: Request, schema: type[_Strict]):
    """What every generating endpoint does first: the key, the body's size and fields, the
    model's name; then the app's state, its settings and the parsed request."""
    check_key(request)
    state = request.app.state
    settings: Settings = state.settings
    req = parse(await read_json(request, settings.max_request_bytes), schema)
    check_model(req.model, settings)
    return state, settings, req


async def chat_completions(request: Request):
    state, settings, req = await generation_request(request, ChatRequest)
    history, message = chat_rounds(req.messages)
    task, ignored = task_line(req.messages, settings.system_messages)
    max_new = max_new_tokens(req, settings, state.engine.decoding["max_length"])
    dec = decoding(req, state.engine.decoding, max_new, state.engine.engine)
    try:  # in a thread: a long conversation is tokenized once per round dropped
        text, dropped = await asyncio.to_thread(
            chat.build_prompt, history, message, state.engine.count_tokens,
            settings.max_context_length, max_new, task)
    except ValueError as e:
        raise ApiError(400, str(e), "messages", "context_length_exceeded") from None
    prompt_tokens = state.engine.count_tokens(text)
    gen = Generation(state, [text], dec, req.stops(), req.n or 1)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": settings.model_name}
    headers = {"x-dropped-rounds": str(dropped), "x-ignored-system-messages": str(ignored)}
    if req.stream:
        include = bool(req.stream_options and req.stream_options.include_usage)
        opening = tuple({**chat_choice(seq.index, None), "delta": {"role": "assistant",
                                                                    "content": ""}}
                        for seq in gen.sequences)
        return EventStream(chunks(gen, {**head, "object": "chat.completion.chunk"},
                                  prompt_tokens, include, chat_choice, opening),
                           gen, headers=headers)
    finals = await gen.finals()
    choices = [{"index": e.index, "message": {"role": "assistant", "content": e.text},
                "logprobs": None, "finish_reason": e.finish_reason} for e in finals]
    return JSONResponse({**head, "object": "chat.completion", "choices": choices,
                         "usage": usage(prompt_tokens, finals)}, headers=headers)


async def completions(request: Request):
    state, settings, req = await generation_request(request, CompletionRequest)
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    n = req.n or 1
    if not prompts or len(prompts) * n > MAX_CHOICES:
        raise ApiError(400, f"1 to {MAX_CHOICES} answers a request (prompts times n)", "prompt")
    for i, text in enumerate(prompts):
        if not text.strip():
            raise ApiError(400, "the prompt is empty (or blanks only): nothing to complete",
                           "prompt" if isinstance(req.prompt, str) else f"prompt.{i}")
    max_new = max_new_tokens(req, settings, state.engine.decoding["max_length"])
    dec = decoding(req, state.engine.decoding, max_new, state.engine.engine)
    counts = [state.engine.count_tokens(p) for p in prompts]
    if max(counts) + max_new > settings.max_context_length:
        raise ApiError(400, f"a prompt of {max(counts)} tokens and max_tokens {max_new} are over "
                       f"the context length {settings.max_context_length}", "prompt",
                       "context_length_exceeded")
    gen = Generation(state, prompts, dec, req.stops(), n)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": settings.model_name}
    if req.stream:
        include = bool(req.stream_options and req.stream_options.include_usage)
        return EventStream(chunks(gen, head, sum(counts), include, text_choice), gen)
    finals = await gen.finals()
    choices = [text_choice(e.index, e.text, e.finish_reason) for e in finals]
    return JSONResponse({**head, "choices": choices, "usage": usage(sum(counts), finals)})


def chat_choice(index: int, text: str | None, finish: str | None = None) -> dict:
    return {"index": index, "delta": {} if text is None else {"content": text},
            "logprobs": None, "finish_reason": finish}


def text_choice(index: int, text: str | None, finish: str | None = None) -> dict:
    return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}


async def chunks(gen: Generation, head: dict, prompt_tokens: int, include_usage: bool,
                 choice, first: tuple[dict, ...] = ()) -> AsyncIterator[str]:
    """A Generation as server-sent events: the `first` choices, then each choice's new text
    and its end (`choice(index, text, finish_reason)`: the endpoint's chunk shape), then the
    usage when asked for, then [DONE]; an error ends the stream as an error event."""
    for c in first:
        yield sse({**head, "choices": [c]})
    async for kind, event, delta in deltas(gen):
        if kind == "error":
            yield delta
            return
        if kind == "text":
            yield sse({**head, "choices": [choice(event.index, delta)]})
        else:
            yield sse({**head, "choices": [choice(event.index, None, event.finish_reason)]})
    if include_usage:
        yield sse({**head, "choices": [], "usage": usage(prompt_tokens, gen.finals_seen)})
    yield sse("[DONE]")


async def deltas(gen: Generation) -> AsyncIterator[tuple[str, Event, str]]:
    """("text", event, new text), ("finish", event, ""), or ("error", event, an SSE error)."""
    sent: dict[int, str] = {}
    async for event in gen:
        if event.error:
            yield "error", event, sse(error_body(ApiError(500, event.error, kind="server_error")))
            return
        before = sent.get(event.index, "")
        # Only text that extends what was sent goes out (a stream cannot take text back); a
        # trailing U+FFFD may be the first bytes of a character still coming: held back.
        text = event.text if event.finish_reason else event.text.rstrip("\ufffd")
        if text.startswith(before) and len(text) > len(before):
            sent[event.index] = text
            yield "text", event, text[len(before):]
        if event.finish_reason:
            gen.finals_seen.append(event)
            yield "finish", event, ""


# ---- the application -------------------------------------------------------------------------

async def _api_error(request: Request, e: ApiError) -> JSONResponse:
    return error_response(e)


async def _http_error(request: Request, e: HTTPException) -> JSONResponse:
    return error_response(ApiError(e.status_code, str(e.detail)))


async def _server_error(request: Request, e: Exception) -> JSONResponse:
    log.exception("request failed", exc_info=e)
    return error_response(ApiError(500, "internal server error (see the server's log)",
                                   kind="server_error"))


def build_app(engine: Worker, settings: Settings) -> Starlette:
    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, Exception: _server_error})
    app.state.engine = engine
    app.state.settings = settings
    app.state.pending = 0
    app.state.created = int(time.time())
    return app
