"""Prompt layouts, written once as data: the task lines and the section markers, the two
layouts built from them (alpaca's records, the rounds of a conversation), the same conversation
as a Jinja chat template (the Hugging Face release's), and where an answer in that layout stops
(`until_stop`: the chatbot, the API, the evaluation). The training files,
the chatbot and the API all lay prompts out with these functions.

OpenNMT-py reads one example a line, so every "\\n" inside an example is stored as NEWLINE.
"""

from __future__ import annotations

import re

NEWLINE = "｟newline｠"

TASK = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
TASK_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request."
)

# Section markers: each heads its text on the next line; sections are joined by SEP.
INSTRUCTION = "### Instruction:"
INPUT = "### Input:"
RESPONSE = "### Response:"
SEP = "\n\n"

# The model opening a next round by itself: the answer ends where that starts.
STOP = SEP + INSTRUCTION

# Characters that Python's str.splitlines() (and so many readers) treat as line breaks.
# "\r\n", "\r" and the Unicode separators are real line breaks: keep them as NEWLINE.
# The rest are control characters that would split an example silently: make them spaces.
_BREAKS = re.compile("\r\n|[\r\n\u2028\u2029\x85]")
_SPLITTERS = re.compile("[\x0b\x0c\x1c\x1d\x1e]")


def section(marker: str, text: str) -> str:
    return f"{marker}\n{text}"


def alpaca(instruction: str, input: str, output: str) -> str:
    """One alpaca record as text, with the two Alpaca templates to the character."""
    if input:
        return SEP.join([TASK_WITH_INPUT, section(INSTRUCTION, instruction),
                         section(INPUT, input), section(RESPONSE, output)])
    return SEP.join([TASK, section(INSTRUCTION, instruction), section(RESPONSE, output)])


def conversation(rounds: list[tuple[str, str]], next_message: str | None = None,
                 task: str = TASK) -> str:
    """A multi-round conversation: the task line, then each round once, in order.

    `rounds` are (human, gpt) pairs. With `next_message`, the text ends with an open
    "### Response:\\n" for the model to complete: that is the chatbot's prompt. `task`: the
    task line (the API's system messages where the server uses them so).
    """
    turns = [section(INSTRUCTION, human) + SEP + section(RESPONSE, gpt) for human, gpt in rounds]
    if next_message is not None:
        turns.append(section(INSTRUCTION, next_message) + SEP + section(RESPONSE, ""))
    return task + SEP + SEP.join(turns)


def to_line(text: str) -> str:
    """Text -> one line of an OpenNMT-py corpus."""
    return _SPLITTERS.sub(" ", _BREAKS.sub(NEWLINE, text))


def from_line(line: str) -> str:
    """One corpus or prediction line -> text."""
    return line.rstrip("\n").replace(NEWLINE, "\n")

def until_stop(text: str) -> tuple[str, bool]:
    """The answer part of generated text, and whether the model went past it (STOP seen).

    A trailing beginning of STOP is held back, so a stream never shows "\\n\\n###" and then
    takes it away.
    """
    head, sep, _ = text.partition(STOP)
    if sep:
        return head, True
    for n in range(len(STOP) - 1, 0, -1):
        if text.endswith(STOP[:n]):
            return text[:-n], False
    return text, False


def _jinja_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template() -> str:
    """A Jinja chat template giving <s> + conversation(rounds, next_message): the task line,
    each round, and with add_generation_prompt the open "### Response:" (what the chatbot and
    the API send). <s> is in the template because transformers and vLLM tokenize a rendered chat
    with add_special_tokens=False. A system message is refused, as the API refuses it: the model
    was finetuned with one fixed task line."""
    human, gpt = SEP + section(INSTRUCTION, ""), SEP + section(RESPONSE, "")
    return "".join([
        "{{ bos_token }}{{ ", _jinja_string(TASK), " }}",
        "{% for message in messages %}",
        "{% if message['role'] == 'system' %}{{ raise_exception('No system message: this model "
        "was finetuned with one fixed task line') }}{% endif %}",
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception("
        "'Conversation roles must alternate user/assistant/user/...') }}{% endif %}",
        "{% if message['role'] == 'user' %}{{ ", _jinja_string(human),
        " + message['content'] }}{% else %}{{ ", _jinja_string(gpt),
        " + message['content'] }}{% endif %}",
        "{% endfor %}",
        "{% if add_generation_prompt %}{{ ", _jinja_string(gpt), " }}{% endif %}",
    ])


def ollama_template() -> str:
    """The same conversation as chat_template(), in Ollama's Go-template syntax (a Modelfile's
    TEMPLATE): the task line, each message after its marker, and the open "### Response:".
    No <s>: Ollama adds it as the GGUF's add_bos_token says. Ollama hands a system message to
    the template like any other: this one leaves it out, as the model knows one task line."""
    human, gpt = SEP + section(INSTRUCTION, ""), SEP + section(RESPONSE, "")
    return "".join([
        TASK,
        "{{ range .Messages }}",
        '{{ if eq .Role "user" }}', human, "{{ .Content }}",
        '{{ else if eq .Role "assistant" }}', gpt, "{{ .Content }}",
        "{{ end }}",
        "{{ end }}",
        gpt,
    ])
