"""scripts/chatbot.py in a real browser: the server on the tiny model (ct2 mode), headless
Debian Chromium driven by Playwright, every request outside 127.0.0.1 blocked and reported.

VICUNA_TINY_RUN=/path/to/a/workflow/run points the tests at an existing run of the workflow
instead of running it once more (the `tiny_run` fixture).
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import CHROMIUM, CHROMIUM_ARGS, REPO, free_port, serve_chatbot

from vicuna import prompt, tokenizer
from vicuna.serve.engines.base import count_tokens

SCRIPT = REPO / "scripts" / "chatbot.py"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason="no /usr/bin/chromium (apt-get install -y chromium)"),
    # gradio's queue statistics use pandas options that pandas 3 deprecates: not ours to fix
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),
]

M1 = "Repeat these words.\ncat dog"
M2 = "What is the first word?\nsun moon"
M3 = "How many words are there?\nfrog book"


@pytest.fixture(scope="module")
def run_dir(request) -> Path:
    override = os.environ.get("VICUNA_TINY_RUN")
    return Path(override) if override else request.getfixturevalue("tiny_run")


@pytest.fixture(scope="module")
def options(run_dir, tmp_path_factory) -> Path:
    """The run's translate_opts_ct2.yaml with absolute paths, so it works from anywhere."""
    opts = yaml.safe_load((run_dir / "runs/llama-tiny/translate_opts_ct2.yaml").read_text())
    for key in ("model", "src_subword_model"):
        opts[key] = str((run_dir / opts[key]).resolve())
    path = tmp_path_factory.mktemp("chatbot") / "translate_opts_ct2.yaml"
    path.write_text(yaml.safe_dump(opts))
    return path


@pytest.fixture(scope="module")
def wide(options, tmp_path_factory) -> Iterator[str]:
    """A server with room for the whole conversation."""
    yield from serve_chatbot(options, tmp_path_factory.mktemp("wide") / "chatbot.log",
                             "-max_context_length", "2048")


@pytest.fixture(scope="module")
def narrow_budget(options) -> dict:
    """A context length that holds M2's prompt alone exactly, so any earlier round is dropped."""
    opts = yaml.safe_load(options.read_text())
    sp = tokenizer.load(opts["src_subword_model"])

    def count(text: str) -> int:
        return count_tokens(sp, text)

    long_message = "Repeat these words.\n" + " ".join(["sun", "moon", "star", "tree"] * 3)
    assert count(prompt.conversation([], M1)) < count(prompt.conversation([], long_message))
    return {"message": long_message,
            "max_context_length": count(prompt.conversation([], long_message)) + opts["max_length"]}


@pytest.fixture(scope="module")
def narrow(options, narrow_budget, tmp_path_factory) -> Iterator[str]:
    yield from serve_chatbot(options, tmp_path_factory.mktemp("narrow") / "chatbot.log",
                             "-max_context_length", str(narrow_budget["max_context_length"]))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # executable_path: Debian's Chromium; Playwright never downloads a browser of its own.
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def local_only(route):
        url = route.request.url
        if url.startswith("http://127.0.0.1:") or url.startswith("ws://127.0.0.1:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert not outside, f"the page asked for something outside 127.0.0.1: {outside}"


# --- the page, as a user sees it -----------------------------------------------------------


def open_chat(page, url: str) -> None:
    page.goto(url)
    page.locator("#message textarea").wait_for()


def bubbles(page, who: str) -> list[str]:
    return page.locator(f"#chatbot [data-testid='{who}']").all_inner_texts()


def snapshot(page) -> tuple:
    return (tuple(bubbles(page, "user")), tuple(bubbles(page, "bot")),
            page.locator("#notice").inner_text(), page.locator("#message textarea").input_value())


def settle(page, quiet: float = 1.5, timeout: float = 60) -> None:
    """Wait until the page stops changing: the reply is complete (the tiny model takes ~0.1 s)."""
    deadline = time.monotonic() + timeout
    last, since = snapshot(page), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the page kept changing"
        time.sleep(0.1)
        now = snapshot(page)
        if now != last:
            last, since = now, time.monotonic()


def send(page, text: str, *, enter: bool = False, reply: bool = True) -> None:
    """Type a message, send it with the Send button (or Enter), and wait for the whole reply."""
    users = len(bubbles(page, "user"))
    box = page.locator("#message textarea")
    box.fill(text)
    if enter:
        box.press("Enter")
    else:
        page.locator("#send").click()
    if reply:
        page.wait_for_function(
            "n => document.querySelectorAll(\"#chatbot [data-testid='bot']\").length > n",
            arg=users)
    settle(page)


def last_prompt(page) -> str:
    """The exact prompt of the last message, from its (collapsed) box."""
    box = page.locator("#last-prompt textarea")
    if not box.is_visible():
        page.get_by_text("Last prompt sent to the model").click()
    return box.input_value()


# --- tests ---------------------------------------------------------------------------------


def test_two_messages_two_answers_and_round_one_once_in_the_prompt(page, wide, tmp_path):
    open_chat(page, wide)
    send(page, M1, enter=True)
    assert bubbles(page, "user") == [M1]
    [a1] = bubbles(page, "bot")
    assert a1.strip(), "no answer to the first message"
    assert last_prompt(page) == prompt.conversation([], M1)

    send(page, M2)
    assert bubbles(page, "user") == [M1, M2]
    answers = bubbles(page, "bot")
    assert len(answers) == 2 and answers[0] == a1 and answers[1].strip()
    text = last_prompt(page)
    assert text.count(M1) == 1 and text.count(M2) == 1
    assert text == prompt.conversation([(M1, a1)], M2)  # real newlines, each round once
    assert page.locator("#notice").inner_text().strip() == ""
    page.screenshot(path=tmp_path / "two_rounds.png", full_page=True)


def test_empty_message_does_nothing(page, wide, tmp_path):
    open_chat(page, wide)
    send(page, M1)
    before = snapshot(page)
    sent = last_prompt(page)
    send(page, "", enter=True, reply=False)
    send(page, "  \n ", reply=False)
    assert snapshot(page)[:3] == before[:3]  # no new bubble, no notice
    assert last_prompt(page) == sent
    # the triggers still work, and the empty messages left nothing in the conversation
    send(page, M3, enter=True)
    assert bubbles(page, "user") == [M1, M3]
    assert last_prompt(page) == prompt.conversation([(M1, bubbles(page, "bot")[0])], M3)


def test_a_message_past_the_budget_drops_the_oldest_round(page, narrow, narrow_budget,
                                                          tmp_path):
    open_chat(page, narrow)
    send(page, M1)
    assert page.locator("#notice").inner_text().strip() == ""
    assert last_prompt(page) == prompt.conversation([], M1)

    long_message = narrow_budget["message"]
    send(page, long_message)
    notice = page.locator("#notice").inner_text()
    assert "oldest 1 round of" in notice and str(narrow_budget["max_context_length"]) in notice
    assert last_prompt(page) == prompt.conversation([], long_message)  # round 1 left out
    assert bubbles(page, "user") == [M1, long_message]  # ... of the prompt, not of the page
    page.screenshot(path=tmp_path / "dropped.png", full_page=True)

    # a message that does not fit even alone is not sent, and the page says why
    too_long = long_message + " tree"
    send(page, too_long, reply=False)
    assert "Not sent" in page.locator("#notice").inner_text()
    assert "too long" in page.locator("#notice").inner_text()
    assert bubbles(page, "user") == [M1, long_message]
    assert page.locator("#message textarea").input_value() == too_long  # kept, to shorten


# --- Stop, with a slow stand-in model (the tiny model answers before a click lands) ----------


def load_script():
    spec = importlib.util.spec_from_file_location("chatbot_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def slow():
    """The chatbot's page in this process, on a model that streams one word every 0.2 s."""
    script = load_script()
    closed = threading.Event()

    def answer(text: str, decoding: dict) -> Iterator[str]:
        words = []
        try:
            for i in range(100):
                time.sleep(0.2)
                words.append(f"w{i}")
                yield " ".join(words)
        finally:  # where the ct2 engine's stream stops CTranslate2's decoding
            closed.set()

    model = SimpleNamespace(count_tokens=lambda text: len(text.split()), stream=answer,
                            defaults={"max_length": 100})
    demo = script.build_ui(model, "slow", 2048)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        quiet=True)
    yield f"http://127.0.0.1:{port}/", closed
    demo.close()


def test_stop_cancels_the_stream_and_keeps_the_answer_so_far(page, slow):
    url, closed = slow
    open_chat(page, url)
    for n, message in enumerate(("hello", "again"), start=1):
        closed.clear()
        page.locator("#message textarea").fill(message)
        page.locator("#send").click()
        page.wait_for_function(  # the n-th answer is under way
            "n => { const b = document.querySelectorAll(\"#chatbot [data-testid='bot']\");"
            " return b.length === n && /w2/.test(b[n - 1].innerText); }", arg=n)
        page.locator("#stop").click()
        settle(page)
        assert closed.wait(10), "the answer's generator was not closed on Stop"
    hello, again = bubbles(page, "bot")
    assert hello.startswith("w0 w1 w2") and "w99" not in hello
    assert last_prompt(page) == prompt.conversation([("hello", hello)], "again")
