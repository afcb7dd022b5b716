"""scripts/serve_api.py for real: the server in a subprocess on 127.0.0.1, driven by the official
`openai` package (and `requests` for what that client would never send), on a random tiny
LLaMA in every mode: its OpenNMT-py checkpoint (`py`), its CTranslate2 release (`ct2`) and its
GGUF release run by llama.cpp (`gguf`).

The oracle is scripts/simple_inference.py, run on the same options files: a greedy answer
from the API must be its prediction for the same prompt, cut as the chatbot cuts it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests
from helpers import REPO, free_port, run_script, stop_group

from vicuna import prompt, tokenizer
from vicuna.serve import api
from vicuna.serve.engines.base import count_tokens as count_prompt
from vicuna.serve.serving import Event, Sequence, Worker
from vicuna.serve.stops import until_stops

KEY = "test-key"
CONTEXT = 2048  # the servers' -max_context_length
MAX_NEW = 16  # the options files' max_length: the default max_tokens
MODES = ["ct2", "py", "gguf"]

U1, A1 = "Repeat these words.\ncat dog", "cat dog"
U2 = "What is the first word?\nsun moon"
U3 = "How many words are there?\nfrog book tree"
CHAT_PROMPT = prompt.conversation([(U1, A1)], U2)  # the prompt of [U1, A1, U2]
RAW_PROMPT = prompt.conversation([], U3)  # for /v1/completions, sent as it is


# ---- the stop rule, without a server ------------------------------------------------------

def test_until_stops_cuts_at_the_first_stop_and_holds_back_beginnings():
    assert until_stops("a b c", ("b",)) == ("a ", True)
    assert until_stops("a b c", ("c", "b")) == ("a ", True)
    assert until_stops("a b" + prompt.STOP + " b", ("b",)) == ("a ", True)
    assert until_stops("a" + prompt.STOP + "x b", ("b",)) == ("a", True)  # the layout's STOP first
    assert until_stops("answer EN", ("END",)) == ("answer ", False)  # held back while growing
    assert until_stops("answer EN", ("END",), hold=False) == ("answer EN", False)
    assert until_stops("answer\n\n###", ("END",), hold=False) == ("answer", False)  # as the chatbot


# ---- the application on a stand-in engine, in-process ------------------------------------

class EchoWorker(Worker):
    """Answers with the prompt it was given; a prompt holding "boom" fails."""

    def __init__(self) -> None:
        super().__init__(None, count_tokens=len, decoding={"max_length": 8})

    def _generate(self, batch: list[Sequence]) -> None:
        for seq in batch:
            if "boom" in seq.text:
                raise RuntimeError("boom at /secret/path")
            seq.emit(Event(seq.index, seq.text, 1, "stop"))


def echo_client(**settings):
    from starlette.testclient import TestClient

    engine = EchoWorker()
    app = api.build_app(engine, api.Settings("echo", 512, **settings))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    engine.close()


@pytest.fixture
def echo():
    yield from echo_client(max_pending=2)


def ask_echo(client, content: str, **fields):
    return client.post("/v1/chat/completions", json={
        "model": "echo", "messages": [{"role": "user", "content": content}], **fields})


def test_a_failing_generation_is_a_500_json_error_and_the_next_request_works(echo):
    r = ask_echo(echo, "boom")
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    streamed_error = ask_echo(echo, "boom", stream=True).text
    assert '"server_error"' in streamed_error and "secret" not in streamed_error
    r = ask_echo(echo, "hello", n=2)  # max_pending 2: the failed ones are no longer counted
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == prompt.conversation([], "hello")


def test_more_answers_than_max_pending_are_refused_with_429(echo):
    r = ask_echo(echo, "hello", n=3)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert ask_echo(echo, "hello", n=2).status_code == 200  # nothing left counted


SYSTEM_CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
               {"role": "assistant", "content": "hello"},
               {"role": "developer", "content": "in English"}, {"role": "user", "content": "bye"}]


@pytest.mark.parametrize("handling, task, ignored", [
    ("ignore", prompt.TASK, "2"), ("task", "be brief\n\nin English", "0")])
def test_system_messages_are_left_out_or_the_task_line(handling, task, ignored):
    for client in echo_client(system_messages=handling):
        r = client.post("/v1/chat/completions", json={"model": "echo", "messages": SYSTEM_CHAT})
        assert r.json()["choices"][0]["message"]["content"] == prompt.conversation(
            [("hi", "hello")], "bye", task)
        assert r.headers["x-ignored-system-messages"] == ignored


def test_system_messages_refused_when_the_server_says_so():
    for client in echo_client(system_messages="refuse"):
        r = client.post("/v1/chat/completions", json={"model": "echo", "messages": SYSTEM_CHAT})
        assert r.status_code == 400 and r.json()["error"]["code"] == "system_message_unsupported"


# ---- the servers -------------------------------------------------------------------------

class Server:
    """scripts/serve_api.py in a subprocess; `url` waits until it answers."""

    def __init__(self, mode: str, options: Path, log: Path, *args: str) -> None:
        self.mode, self.log, self.port = mode, log, free_port()
        cmd = [sys.executable, str(REPO / "scripts" / "serve_api.py"),
               "-inference_config_file", str(options), "-inference_mode", mode,
               "-max_context_length", str(CONTEXT), "--port", str(self.port), *args]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.ready = False

    @property
    def url(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while not self.ready:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve_api.py exited with {self.proc.returncode}:\n"
                                     f"{self.log.read_text()}")
            try:
                self.ready = requests.get(f"{url}/v1/models", timeout=2).status_code in (200, 401)
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve_api.py did not answer:\n{self.log.read_text()}")
            time.sleep(0.2)
        return url

    def client(self, key: str | None = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or "none", max_retries=0,
                             timeout=60)

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture(scope="module")
def options(tiny_options) -> dict[str, Path]:
    assert tiny_options["max_length"] == MAX_NEW
    return tiny_options


@pytest.fixture(scope="module")
def servers(options, tmp_path_factory):
    """The servers of every mode, started together: ct2 and gguf with an API key, py without
    (and with the older flag for the default handling of system messages)."""
    root = tmp_path_factory.mktemp("servers")
    started = {"ct2": Server("ct2", options["ct2"], root / "ct2.log", "--api_key", KEY),
               "py": Server("py", options["py"], root / "py.log", "--ignore_system_messages"),
               "gguf": Server("gguf", options["gguf"], root / "gguf.log", "--api_key", KEY)}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def expected(servers, options, tmp_path_factory) -> dict[str, dict[str, str]]:
    """simple_inference.py's answers to CHAT_PROMPT and RAW_PROMPT in each mode, cut as the
    chatbot cuts them (while the servers start)."""
    root = tmp_path_factory.mktemp("simple_inference")
    inputs = root / "inputs.txt"
    inputs.write_text(f"{prompt.to_line(CHAT_PROMPT)}\n{prompt.to_line(RAW_PROMPT)}\n")
    answers = {}
    for mode in MODES:
        run_script("simple_inference.py", "-input_file", str(inputs),
                   "-inference_config_file", str(options[mode]), "-inference_mode", mode,
                   "-output_dir", str(root))
        lines = (root / f"predictions_{mode}.txt").read_text(encoding="utf-8").splitlines()
        chat_answer, raw_answer = (prompt.until_stop(prompt.from_line(line))[0] for line in lines)
        answers[mode] = {"chat": chat_answer, "raw": raw_answer}
    return answers


@pytest.fixture(scope="module")
def count_tokens(tiny_meta):
    sp = tokenizer.load(tiny_meta["tokenizer"])
    return lambda text: count_prompt(sp, text)


def multi_round() -> list[dict]:
    return [{"role": "user", "content": U1}, {"role": "assistant", "content": A1},
            {"role": "user", "content": U2}]


def streamed(stream) -> tuple[dict[int, str], dict[int, str], dict | None]:
    """The texts, finish reasons and usage of a stream of chat or completion chunks."""
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    used = None
    for chunk in stream:
        used = chunk.usage.model_dump() if chunk.usage else used
        for c in chunk.choices:
            piece = c.delta.content if hasattr(c, "delta") else c.text
            texts[c.index] = texts.get(c.index, "") + (piece or "")
            if c.finish_reason:
                reasons[c.index] = c.finish_reason
    return texts, reasons, used


# ---- through the openai package ---------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_multi_round_chat_answers_as_simple_inference(mode, servers, expected, count_tokens):
    client = servers[mode].client()
    [model] = client.models.list().data
    reply = client.chat.completions.create(model=model.id, messages=multi_round())
    [choice] = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == expected[mode]["chat"]
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == count_tokens(CHAT_PROMPT)
    assert 0 < reply.usage.completion_tokens <= MAX_NEW
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    if choice.finish_reason == "length":  # py: tokens counted again from the text
        assert reply.usage.completion_tokens == MAX_NEW

    stream = client.chat.completions.create(model=model.id, messages=multi_round(),
                                            stream=True, stream_options={"include_usage": True})
    texts, reasons, used = streamed(stream)
    assert texts == {0: choice.message.content}
    assert reasons == {0: choice.finish_reason}
    assert used == reply.usage.model_dump()


@pytest.mark.parametrize("mode", MODES)
def test_completions_answer_the_raw_prompt(mode, servers, expected, count_tokens):
    client = servers[mode].client()
    model = client.models.list().data[0].id
    reply = client.completions.create(model=model, prompt=RAW_PROMPT)
    assert reply.choices[0].text == expected[mode]["raw"]
    assert reply.usage.prompt_tokens == count_tokens(RAW_PROMPT)
    texts, reasons, _ = streamed(client.completions.create(model=model, prompt=RAW_PROMPT,
                                                           stream=True))
    assert texts == {0: reply.choices[0].text}
    assert reasons == {0: reply.choices[0].finish_reason}


def test_stop_strings_n_and_max_tokens(servers, expected):
    client = servers["ct2"].client()
    model = client.models.list().data[0].id
    answer = expected["ct2"]["chat"]
    # a stop string that first occurs inside the answer, after its start
    cut = next(i for i in range(1, len(answer) - 1)
               if answer[i:i + 2].isascii() and answer.find(answer[i:i + 2]) == i)
    reply = client.chat.completions.create(model=model, messages=multi_round(),
                                           stop=[answer[cut:cut + 2], "never there"], n=2)
    assert [c.index for c in reply.choices] == [0, 1]
    assert {c.message.content for c in reply.choices} == {answer[:cut]}  # greedy: twice the same
    assert {c.finish_reason for c in reply.choices} == {"stop"}

    short = client.chat.completions.create(model=model, messages=multi_round(), max_tokens=3)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 3
    assert answer.startswith(short.choices[0].message.content.rstrip("\ufffd"))


def test_oldest_rounds_dropped_to_fit_the_context(servers, count_tokens):
    """A max_tokens that leaves room for the last two rounds only: the answer is the one to
    the conversation without its first round, and the header says one round was left out."""
    client = servers["ct2"].client()
    model = client.models.list().data[0].id
    u2, a2 = "Repeat these words.\n" + " ".join(["sun moon star"] * 110), "sun moon"
    rest = [{"role": "user", "content": u2}, {"role": "assistant", "content": a2},
            {"role": "user", "content": U3}]
    without_first = count_tokens(prompt.conversation([(u2, a2)], U3))
    max_tokens = CONTEXT - without_first
    assert 0 < max_tokens < 600, "the long round is meant to fill most of the context"

    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=multi_round()[:2] + rest, max_tokens=max_tokens)
    assert raw.headers["x-dropped-rounds"] == "1"
    dropped = raw.parse()
    alone = client.chat.completions.create(model=model, messages=rest, max_tokens=max_tokens)
    assert dropped.usage.prompt_tokens == without_first == alone.usage.prompt_tokens
    assert dropped.choices[0].message.content == alone.choices[0].message.content

    alone_too_long = CONTEXT - count_tokens(prompt.conversation([], u2)) + 1
    with pytest.raises(openai.BadRequestError, match="too long") as e:
        client.chat.completions.create(model=model, messages=rest[:1], max_tokens=alone_too_long)
    assert e.value.body["code"] == "context_length_exceeded"


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_requests_each_get_their_own_answer(mode, servers):
    """Several clients at once get what each would get alone (ct2: generated together; py
    and gguf: one after another)."""
    client = servers[mode].client()
    model = client.models.list().data[0].id
    words = ["cat dog", "sun moon", "red blue green", "one two", "tree frog", "book pen"]
    asks = [([{"role": "user", "content": f"Repeat these words.\n{w}"}], 6 + i)
            for i, w in enumerate(words)][:3 if mode == "py" else 6]  # py: slow and queued

    def ask(messages_and_max):
        messages, max_tokens = messages_and_max
        reply = client.chat.completions.create(model=model, messages=messages,
                                               max_tokens=max_tokens)
        return reply.choices[0].message.content, reply.usage.completion_tokens

    alone = [ask(a) for a in asks]
    barrier = threading.Barrier(len(asks))

    def together(a):
        barrier.wait()
        return ask(a)

    with ThreadPoolExecutor(len(asks)) as pool:
        assert list(pool.map(together, asks)) == alone
    if mode == "ct2":
        sizes = [int(n) for n in re.findall(r"batch of (\d+) sequences",
                                            servers[mode].log.read_text())]
        assert max(sizes) > 1, "concurrent requests were not batched"


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_prompt_among_concurrent_requests_is_refused_and_changes_no_answer(mode,
                                                                                    servers):
    """Answers never depend on what else is in the batch: an empty /v1/completions prompt is a
    400 naming it, and the requests sent beside it get what each gets alone."""
    client = servers[mode].client()
    model = client.models.list().data[0].id
    prompts = [prompt.conversation([], f"Repeat these words.\n{w}")
               for w in ("cat dog", "sun moon", "red blue green", "one two")]

    def ask(text: str):
        try:
            reply = client.completions.create(model=model, prompt=text, max_tokens=8,
                                              temperature=0)
            return reply.choices[0].text
        except openai.BadRequestError as e:
            return e.body

    alone = [ask(p) for p in prompts]
    asks = [*prompts[:2], "", *prompts[2:]]
    barrier = threading.Barrier(len(asks))

    def together(text: str):
        barrier.wait()
        return ask(text)

    with ThreadPoolExecutor(len(asks)) as pool:
        answers = list(pool.map(together, asks))
    assert answers[:2] + answers[3:] == alone
    assert answers[2]["param"] == "prompt" and "empty" in answers[2]["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model, prompt=[prompts[0], "  "], max_tokens=4)
    assert e.value.body["param"] == "prompt.1"


def test_a_requests_temperature_samples_though_the_options_are_greedy(servers, expected):
    """The options files are greedy (top-k 1): temperature 0 or no temperature answers the
    greedy answer; a temperature above 0 samples (OpenAI's meaning), unless the request asks
    for top_k 1 itself; top_k 0 (every token) is accepted."""
    client = servers["ct2"].client()
    model = client.models.list().data[0].id
    messages = [{"role": "user", "content": U3}]

    def answers(**fields) -> list[str]:
        reply = client.chat.completions.create(model=model, messages=messages, n=8, **fields)
        return [c.message.content for c in reply.choices]

    assert set(answers()) == {expected["ct2"]["raw"]}
    assert set(answers(temperature=0)) == {expected["ct2"]["raw"]}
    assert set(answers(temperature=1.0, extra_body={"top_k": 1})) == {expected["ct2"]["raw"]}
    assert len(set(answers(temperature=1.0))) > 1
    assert len(set(answers(temperature=1.0, extra_body={"top_k": 0}))) > 1


def test_client_gone_mid_stream_frees_its_place(servers):
    server = servers["ct2"]
    client = server.client()
    model = client.models.list().data[0].id
    stream = client.chat.completions.create(model=model, messages=multi_round(), stream=True,
                                            max_tokens=CONTEXT - 200)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while not (gone := re.search(r"client gone after (\d+) tokens", server.log.read_text())):
        assert time.monotonic() < deadline, "the server never let the stream go"
        time.sleep(0.1)
    assert int(gone.group(1)) < CONTEXT - 200
    assert client.chat.completions.create(model=model, messages=multi_round()).choices


def test_wrong_or_missing_key_refused(servers):
    for key in ("wrong-key", None):
        with pytest.raises(openai.AuthenticationError) as e:
            servers["ct2"].client(key).models.list()
        assert e.value.status_code == 401
        assert e.value.body["code"] == "invalid_api_key"


# ---- what the openai package would never send ------------------------------------------

def chat_body(**fields) -> dict:
    return {"model": "tiny-ct2", "messages": multi_round(), **fields}


MALFORMED = [
    ("not json", b"{'messages': ", 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("NaN", b'{"model": "tiny-ct2", "messages": [], "temperature": NaN}', 400, None),
    ("unknown field", chat_body(frequency_penalty=0.5), 400, "frequency_penalty"),
    ("misspelt field", chat_body(max_token=5), 400, "max_token"),
    ("wrong type", chat_body(max_tokens="5"), 400, "max_tokens"),
    ("out of range", chat_body(temperature=3), 400, "temperature"),
    ("negative top_k", chat_body(top_k=-1), 400, "top_k"),
    ("missing messages", {"model": "tiny-ct2"}, 400, "messages"),
    ("no messages", chat_body(messages=[]), 400, "messages"),
    ("bad role", chat_body(messages=[{"role": "bot", "content": "hi"}]), 400,
     "messages.0.role"),
    ("not alternating", chat_body(messages=[{"role": "user", "content": "a"}] * 2), 400,
     "messages"),
    ("empty stop", chat_body(stop=[""]), 400, "stop"),
    ("long stop", chat_body(stop="x" * 300), 400, "stop"),
    ("too many messages", chat_body(messages=multi_round() * 100), 400, "messages"),
    ("too many choices", chat_body(n=100), 400, "n"),
    ("too many tokens", chat_body(max_tokens=CONTEXT), 400, "max_tokens"),
    ("unknown model", chat_body(model="gpt-4"), 404, "model"),
    ("too large", chat_body(messages=[{"role": "user", "content": "x" * (2 << 20)}]), 413, None),
]


@pytest.mark.parametrize("body,status,param", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_json_errors(servers, body, status, param):
    url = f"{servers['ct2'].url}/v1/chat/completions"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = requests.post(url, data=data, timeout=30, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"] and "Traceback" not in r.text
    assert error["param"] == param


def test_other_routes_and_methods_get_json_errors(servers):
    url = servers["ct2"].url
    auth = {"Authorization": f"Bearer {KEY}"}
    assert requests.get(f"{url}/v1/chat/completions", headers=auth).status_code == 405
    r = requests.post(f"{url}/v1/embeddings", headers=auth, json={})
    assert r.status_code == 404 and r.json()["error"]["message"]
    # the key is asked for before the body is read
    assert requests.post(f"{url}/v1/chat/completions", data=b"{").status_code == 401


def test_the_server_still_answers_after_malformed_requests(servers, expected):
    for mode in MODES:
        client = servers[mode].client()
        for body in (b"{", b'{"model": 1}', b"\xff\xfe"):
            requests.post(f"{servers[mode].url}/v1/completions", data=body,
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        reply = client.chat.completions.create(model=client.models.list().data[0].id,
                                               messages=multi_round())
        assert reply.choices[0].message.content == expected[mode]["chat"]
        assert servers[mode].proc.poll() is None


# ---- seed, system messages and OpenAI's other fields, through the openai package -------------

def sampled(client: openai.OpenAI, seed: int | None, n: int = 1) -> list[str]:
    """Answers sampled from every token (the options files are greedy: top-k 1); 12 tokens
    are enough to tell samples apart."""
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": U3}], temperature=1.0, n=n, max_tokens=12,
        extra_body={"top_k": 0}, **({} if seed is None else {"seed": seed}))
    return [c.message.content for c in reply.choices]


@pytest.mark.parametrize("mode", ["py", "gguf"])
def test_a_seed_gives_the_same_sampled_answer_alone_and_beside_others(mode, servers):
    """py and gguf: a seeded sampled answer is the same each time, and the same while unseeded
    sampled requests are generated before, after and between; another seed gives another
    answer."""
    client = servers[mode].client()
    first = sampled(client, 7)
    assert sampled(client, 7) == first
    assert len(set(sampled(client, None, n=4))) > 1, "the requests do not sample"
    assert sampled(client, 8) != first
    two = sampled(client, 7, n=2)  # choice j samples with seed + j
    assert two[0] == first[0] and two[1] == sampled(client, 8)[0]
    asks = [7, None, 7, None, 7, None]
    barrier = threading.Barrier(len(asks))

    def together(seed):
        barrier.wait()
        return sampled(client, seed)

    with ThreadPoolExecutor(len(asks)) as pool:
        answers = list(pool.map(together, asks))
    assert [a for a, seed in zip(answers, asks, strict=True) if seed] == [first] * 3


def test_a_seed_with_sampling_is_refused_by_name_where_the_mode_cannot_honour_it(servers,
                                                                                expected):
    client = servers["ct2"].client()
    with pytest.raises(openai.BadRequestError) as e:
        sampled(client, 7)
    assert e.value.body["param"] == "seed" and e.value.body["code"] == "unsupported_parameter"
    assert "the ct2 mode cannot make a sampled answer reproducible" in e.value.body["message"]
    greedy = client.chat.completions.create(model=client.models.list().data[0].id, seed=7,
                                            messages=[{"role": "user", "content": U3}])
    assert greedy.choices[0].message.content == expected["ct2"]["raw"]


@pytest.mark.parametrize("mode", MODES)
def test_a_system_message_is_left_out_and_counted_by_default(mode, servers, expected):
    client = servers[mode].client()
    raw = client.chat.completions.with_raw_response.create(
        model=client.models.list().data[0].id,
        messages=[{"role": "system", "content": "You are a helpful assistant."}, *multi_round()])
    assert raw.headers["x-ignored-system-messages"] == "1"
    assert raw.parse().choices[0].message.content == expected[mode]["chat"]


# Each of the openai client's fields that this server does not implement, with a value that
# would change the answer (refused by name) and one that changes nothing (accepted).
CHANGES = {
    "frequency_penalty": (0.5, 0.0), "presence_penalty": (0.5, 0), "logit_bias": ({"5": 10}, {}),
    "logprobs": (True, False), "top_logprobs": (2, 0),
    "tools": ([{"type": "function", "function": {"name": "f"}}], []),
    "tool_choice": ("auto", "none"), "functions": ([{"name": "f"}], []),
    "function_call": ("auto", "none"), "parallel_tool_calls": (None, True),
    "response_format": ({"type": "json_object"}, {"type": "text"}),
    "modalities": (["text", "audio"], ["text"]), "audio": ({"voice": "alloy", "format": "mp3"}, None),
    "prediction": ({"type": "content", "content": "x"}, None), "reasoning_effort": ("high", None),
    "verbosity": ("low", None), "web_search_options": ({}, None), "moderation": ("auto", None),
    "store": (True, False), "metadata": (None, {"a": "b"}), "service_tier": ("flex", "auto"),
    "prompt_cache_key": (None, "k"), "prompt_cache_options": (None, {}),
    "prompt_cache_retention": (None, "24h"), "safety_identifier": (None, "someone"),
    "user": (None, "someone"), "best_of": (2, 1), "echo": (True, False), "suffix": ("end", ""),
}
SUPPORTED = {"model", "messages", "prompt", "max_tokens", "max_completion_tokens", "n", "stop",
             "stream", "stream_options", "temperature", "top_p", "seed"}
CLIENT_ONLY = {"self", "extra_headers", "extra_query", "extra_body", "timeout"}


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_every_field_of_the_openai_client_is_accepted_or_refused_by_name(servers, endpoint,
                                                                         tmp_path):
    """Every parameter of the installed client's create() is implemented, or accepted where it
    changes nothing, or refused naming it; and docs/api.md lists it."""
    import inspect

    client = servers["ct2"].client()
    create = client.chat.completions.create if endpoint == "chat" else client.completions.create
    fields = set(inspect.signature(create).parameters) - CLIENT_ONLY
    assert fields - SUPPORTED <= set(CHANGES), "fields this test does not know: classify them"
    base = ({"messages": multi_round()} if endpoint == "chat" else {"prompt": RAW_PROMPT})
    docs = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    for field in sorted(fields - SUPPORTED):
        assert f"`{field}`" in docs, field
        refused, accepted = CHANGES[field]
        if refused is not None:
            with pytest.raises(openai.BadRequestError) as e:
                create(model="tiny-ct2", max_tokens=1, **base, **{field: refused})
            assert e.value.body["param"] == field, e.value.body
            assert e.value.body["message"].startswith(f"{field} is not supported"), field
        reply = create(model="tiny-ct2", max_tokens=1, **base,
                       **({field: accepted} if accepted is not None else {}))
        assert reply.choices, field
    create(model="tiny-ct2", max_tokens=1, stream=True, **base,  # newer clients' stream option
           stream_options={"include_usage": True, "include_obfuscation": False}).close()
