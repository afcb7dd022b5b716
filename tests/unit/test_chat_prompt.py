"""The chatbot's prompt within the context budget, at the budget's edges, and answers as the
chatbot shows them (vicuna.serve.chat, vicuna.prompt.until_stop, vicuna.evaluation.evaluate)."""

import pytest
from helpers import LLAMA_TOKENIZER

from vicuna import prompt
from vicuna.evaluation import evaluate
from vicuna.serve import chat
from vicuna.serve.engines.base import count_tokens, prompt_pieces

HISTORY = [("first question", "first answer"), ("second question", "second answer"),
           ("third question", "third answer")]
MESSAGE = "new question"
NEW = 10  # max new tokens


def words(text: str) -> int:
    """A deterministic stand-in for the model's tokenizer: one token a word."""
    return len(text.split())


def full(history: list[tuple[str, str]]) -> int:
    """The context length that the prompt with `history` fills exactly."""
    return words(prompt.conversation(history, MESSAGE)) + NEW


def test_exactly_full_drops_nothing():
    text, dropped = chat.build_prompt(HISTORY, MESSAGE, words, full(HISTORY), NEW)
    assert dropped == 0
    assert text == prompt.conversation(HISTORY, MESSAGE)
    assert words(text) + NEW == full(HISTORY)


def test_one_token_over_drops_the_oldest_round():
    text, dropped = chat.build_prompt(HISTORY, MESSAGE, words, full(HISTORY) - 1, NEW)
    assert dropped == 1
    assert text == prompt.conversation(HISTORY[1:], MESSAGE)
    assert "first question" not in text and "first answer" not in text


def test_drops_only_as_many_oldest_rounds_as_needed():
    text, dropped = chat.build_prompt(HISTORY, MESSAGE, words, full(HISTORY[2:]), NEW)
    assert (text, dropped) == (prompt.conversation(HISTORY[2:], MESSAGE), 2)
    text, dropped = chat.build_prompt(HISTORY, MESSAGE, words, full([]), NEW)
    assert (text, dropped) == (prompt.conversation([], MESSAGE), 3)


def test_a_message_alone_over_the_budget_is_an_error():
    with pytest.raises(ValueError, match="message is too long"):
        chat.build_prompt([], MESSAGE, words, full([]) - 1, NEW)
    # dropping every round is not enough
    with pytest.raises(ValueError, match="message is too long"):
        chat.build_prompt(HISTORY, MESSAGE, words, full([]) - 1, NEW)


def test_max_new_tokens_leaving_no_room_is_an_error():
    with pytest.raises(ValueError, match="10 new tokens"):
        chat.build_prompt([], MESSAGE, words, NEW, NEW)


def test_history_once_each_in_order():
    text, dropped = chat.build_prompt(HISTORY, MESSAGE, words, 10_000, NEW)
    assert dropped == 0
    assert text == prompt.conversation(HISTORY, MESSAGE)
    parts = [part for round in HISTORY for part in round] + [MESSAGE]
    assert [text.count(part) for part in parts] == [1] * len(parts)
    positions = [text.index(part) for part in parts]
    assert positions == sorted(positions)
    assert text.endswith(f"### Instruction:\n{MESSAGE}\n\n### Response:\n")


def test_counts_the_whole_prompt_each_time():
    # Tokens do not add up across joins, so the prompt is counted as the model sees it.
    seen = []
    chat.build_prompt(HISTORY, MESSAGE, lambda t: seen.append(t) or words(t), full([]), NEW)
    assert seen == [prompt.conversation(HISTORY[n:], MESSAGE) for n in range(4)]


@pytest.mark.skipif(not LLAMA_TOKENIZER.is_file(), reason="real LLaMA tokenizer fixture absent")
def test_token_counter_counts_bos_and_pieces():
    from vicuna import tokenizer

    sp = tokenizer.load(LLAMA_TOKENIZER)
    text = prompt.conversation([("hi", "hello")], "Repeat these words.\ncat dog")
    assert count_tokens(sp, text) == 1 + len(sp.encode(text))
    assert prompt_pieces(sp, text) == ["<s>", *sp.encode(text, out_type=str)]


@pytest.mark.parametrize(("generated", "shown", "stopped"), [
    ("cat dog", "cat dog", False),
    ("cat dog\n\n### Instruction:\nWhat", "cat dog", True),
    ("cat dog\n\n##", "cat dog", False),  # maybe STOP coming: held back
    ("line one\nline two", "line one\nline two", False),
])
def test_until_stop(generated, shown, stopped):
    assert prompt.until_stop(generated) == (shown, stopped)


def test_exact_match_reads_answers_as_the_chatbot_shows_them():
    references = ["cat", "dog｟newline｠cat", "3"]
    predictions = [
        "cat｟newline｠｟newline｠### Instruction:｟newline｠Repeat these words.",  # opens a round
        "dog｟newline｠cat",  # stopped by itself
        "3｟newline｠｟newline｠Q: How many words are there?",  # goes on in another layout
    ]
    assert evaluate.exact_match(predictions, references, until_stop=True) == pytest.approx(2 / 3)
    assert evaluate.exact_match(predictions, references, until_stop=False) == pytest.approx(1 / 3)
