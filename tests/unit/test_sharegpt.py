"""Raw ShareGPT read as FastChat reads it (flatten_dataset.py --format sharegpt|sharegpt_html):
each repair on a record that needs it, and counted; records that still do not alternate
rejected naming the record's index, its id and the turn; the dumps' HTML as markdown."""

from __future__ import annotations

import json

import pytest
from helpers import run_script

from vicuna import prompt
from vicuna.data import flatten, sharegpt_html

NL = "｟newline｠"


def turn(role: str, value: str) -> dict:
    return {"from": role, "value": value}


def run(tmp_path, records, *extra, fmt="sharegpt", check=True):
    src, out, report = tmp_path / "in.json", tmp_path / "out.txt", tmp_path / "report.json"
    src.write_text(json.dumps(records), encoding="utf-8")
    result = run_script("flatten_dataset.py", "--format", fmt, "--report", str(report), *extra,
                        str(src), str(out), check=check)
    if result.returncode:
        return result, None, None
    return result, out.read_text(encoding="utf-8").splitlines(), json.loads(report.read_text())


def line(*rounds: tuple[str, str]) -> str:
    return prompt.to_line(prompt.conversation(list(rounds)))


GOOD = [turn("human", "q1"), turn("gpt", "a1"), turn("human", "q2"), turn("gpt", "a2")]

REPAIRS = {
    "a leading gpt turn": ([turn("gpt", "Hello! How can I help?"), *GOOD], [flatten.LEADING]),
    "a leading bing turn": ([turn("bing", "Hi"), *GOOD], [flatten.LEADING]),
    "a trailing human turn": ([*GOOD, turn("human", "and then?")], [flatten.TRAILING]),
    "system turns": ([turn("system", "Be brief."), *GOOD[:2], turn("system", "x"), *GOOD[2:]],
                     [flatten.SYSTEM_TURN, flatten.SYSTEM_TURN]),
    "all of them": ([turn("system", "s"), turn("gpt", "hi"), *GOOD, turn("user", "?")],
                    [flatten.SYSTEM_TURN, flatten.LEADING, flatten.TRAILING]),
}


@pytest.mark.parametrize("case", REPAIRS)
def test_fastchat_repairs_keep_the_good_rounds_and_are_counted(tmp_path, case):
    turns, repairs = REPAIRS[case]
    _, lines, report = run(tmp_path, [{"id": "c1", "conversations": turns}])
    assert lines == [line(("q1", "a1"), ("q2", "a2"))]
    assert report["kept"] == 1 and report["skipped"] == 0
    assert report["repaired"] == {r: repairs.count(r) for r in repairs}


def test_role_names_are_mapped_as_fastchat_maps_them(tmp_path):
    turns = [turn("user", "q1"), turn("chatgpt", "a1"), turn("human", "q2"), turn("bard", "a2"),
             turn("user", "q3"), turn("bing", "a3"), turn("human", "q4"), turn("assistant", "a4")]
    _, lines, report = run(tmp_path, [{"id": "roles", "conversations": turns}])
    assert lines == [line(*[(f"q{i}", f"a{i}") for i in range(1, 5)])]
    assert report["repaired"] == {}


REJECTED = {
    "gpt after gpt": ([*GOOD[:2], turn("gpt", "more"), *GOOD[2:]], "turn 2 is from gpt after gpt",
                      "roles do not alternate"),
    "human after user": ([*GOOD[:2], turn("user", "x"), turn("human", "y"), turn("gpt", "z")],
                         "turn 3 is from human after user", "roles do not alternate"),
    "two leading gpt turns": ([turn("gpt", "a"), turn("chatgpt", "b"), *GOOD],
                              "turn 1 is from chatgpt after gpt", "roles do not alternate"),
    "an unknown role": ([*GOOD, turn("narrator", "n"), turn("gpt", "g")],
                        "turn 4 is from 'narrator', neither a human", "a turn from an unknown role"),
    "nothing left": ([turn("gpt", "a"), turn("human", "b")],
                     "no human/gpt round left (dropped a leading turn not from a human; dropped a "
                     "trailing human turn without answer)", "no human/gpt round"),
    "an empty answer": ([*GOOD[:2], turn("human", "q"), turn("gpt", " ")], "turn 3: empty answer",
                        "empty answer"),
}


@pytest.mark.parametrize("case", REJECTED)
def test_stop_names_the_record_its_id_and_the_cause(tmp_path, case):
    turns, cause, _ = REJECTED[case]
    records = [{"id": "ok", "conversations": GOOD}, {"id": "xyz", "conversations": turns}]
    result, _, _ = run(tmp_path, records, check=False)
    assert result.returncode != 0
    assert f"in.json: record 1 (id 'xyz'): {cause}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "report.json").exists()


def test_skip_counts_each_kind_and_lists_each_record(tmp_path):
    records = [{"id": "ok", "conversations": GOOD}]
    records += [{"id": f"bad{i}", "conversations": REJECTED[case][0]} for i, case in enumerate(REJECTED)]
    _, lines, report = run(tmp_path, records, "--on_error", "skip")
    assert lines == [line(("q1", "a1"), ("q2", "a2"))]
    kinds = [kind for _, _, kind in REJECTED.values()]
    assert report["skipped_by_reason"] == {k: kinds.count(k) for k in kinds}
    assert [(r["record"], r["id"]) for r in report["skipped_records"]] == [
        (i + 1, f"bad{i}") for i in range(len(REJECTED))]
    assert report["skipped_records"][0]["reason"] == "turn 2 is from gpt after gpt"
    assert report["repaired"] == {}  # repairs of rejected records are not counted


def test_a_record_without_id_is_named_by_index(tmp_path):
    result, _, _ = run(tmp_path, [{"conversations": [*GOOD, *GOOD[1:2]]}], check=False)
    assert "in.json: record 0: turn 4 is from gpt after gpt" in result.stderr


# A gpt turn as the ShareGPT HTML dumps hold it: the page's markup, a code block with its
# header (language label, "Copy code" button) and highlight.js spans.
DUMP_ANSWER = (
    '<div class="markdown prose w-full break-words dark:prose-invert light"><p>Here is a '
    '<strong>Python</strong> function for my_var:</p><pre><div class="bg-black mb-4 rounded-md">'
    '<div class="flex items-center relative text-gray-200 bg-gray-800 px-4 py-2 text-xs '
    'font-sans"><span class="">python</span><button class="flex ml-auto gap-2"><svg '
    'stroke="currentColor"></svg>Copy code</button></div><div class="p-4 overflow-y-auto">'
    '<code class="!whitespace-pre hljs language-python"><span class="hljs-keyword">def</span> '
    '<span class="hljs-title function_">double</span>(<span class="hljs-params">a_b</span>):\n'
    '    <span class="hljs-keyword">return</span> a_b * <span class="hljs-number">2</span>\n'
    '</code></div></div></pre><h3>Notes</h3><ol><li><p>it doubles</p></li><li><p>x &amp; y'
    '</p></li></ol></div>')
DUMP_MARKDOWN = (
    "Here is a **Python** function for my_var:\n\n```python\ndef double(a_b):\n"
    "    return a_b * 2\n```\n\n### Notes\n\n1. it doubles\n2. x & y")


def test_html_dump_turns_become_markdown_without_the_page_artefacts(tmp_path):
    turns = [turn("human", "1 / 1Write a function.\nIn Python, if a<b."), turn("gpt", DUMP_ANSWER),
             turn("human", "2 / 2Thanks"),
             turn("gpt", '<div><p>You are welcome.</p><pre>Copy code</pre></div>')]
    _, lines, report = run(tmp_path, [{"id": "h", "conversations": turns}], fmt="sharegpt_html")
    assert lines == [line(("Write a function.\nIn Python, if a<b.", DUMP_MARKDOWN),
                          ("Thanks", "You are welcome."))]
    # the same record read as plain `sharegpt` keeps the HTML as it is
    _, plain, _ = run(tmp_path, [{"id": "h", "conversations": turns}])
    assert plain == [line(("1 / 1Write a function.\nIn Python, if a<b.", DUMP_ANSWER),
                          ("2 / 2Thanks", turns[3]["value"]))]


@pytest.mark.parametrize(("text", "markdown"), [
    ("```\npythonCopy code\nprint(1)\n```", "```python\nprint(1)\n```"),  # a header left as text
    ("Done.\n\n```\nCopy code\n```", "Done."),  # an empty code block
    ("Copy12 chars / 3 words\nok", "ok"),
    ("A 1 / 2 split stays.", "A 1 / 2 split stays."),  # only the counter that opens a message
])
def test_text_artefacts_fastchat_removes(text, markdown):
    assert sharegpt_html.to_markdown(text) == markdown


def test_html_that_empties_an_answer_rejects_the_record(tmp_path):
    turns = [turn("human", "q"), turn("gpt", "<div><button>Copy code</button></div>")]
    result, _, _ = run(tmp_path, [{"id": "e", "conversations": turns}], fmt="sharegpt_html",
                       check=False)
    assert "record 0 (id 'e'): turn 1: empty answer" in result.stderr
