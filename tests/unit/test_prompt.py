"""The prompt layouts, to the character: training files and the chatbot share them."""

from vicuna import prompt


def test_alpaca_without_input():
    assert prompt.alpaca("Give three tips.", "", "1. Eat.") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nGive three tips.\n\n### Response:\n1. Eat."
    )


def test_alpaca_with_input():
    assert prompt.alpaca("Sum.", "1 2", "3") == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSum.\n\n### Input:\n1 2\n\n### Response:\n3"
    )


def test_conversation_rounds_once_in_order_and_open_response():
    text = prompt.conversation([("hi", "hello"), ("how?", "fine")], next_message="bye")
    assert text == (
        prompt.TASK + "\n\n### Instruction:\nhi\n\n### Response:\nhello"
        "\n\n### Instruction:\nhow?\n\n### Response:\nfine"
        "\n\n### Instruction:\nbye\n\n### Response:\n"
    )


def test_line_round_trip_keeps_every_break_inside_one_line():
    text = "a\nb\r\nc\rd\u2028e\x85f\x0bg"
    line = prompt.to_line(text)
    assert len(line.splitlines()) == 1
    assert line == "a｟newline｠b｟newline｠c｟newline｠d｟newline｠e｟newline｠f g"
    assert prompt.from_line(line) == "a\nb\nc\nd\ne\nf g"
