#!/usr/bin/env python
"""A multi-round chat with the finetuned model in a gradio page, in `py` (OpenNMT-py), `ct2`
(CTranslate2, streamed token by token) or `gguf` (llama.cpp, streamed token by token) mode (the
tutorial's flags).

Each prompt is vicuna.prompt.conversation of the earlier rounds and the new message; when it
would not fit -max_context_length (with the max new tokens reserved), the oldest whole rounds
are left out and the page says so. Serves on 127.0.0.1 unless --host says otherwise, and
makes no public link unless --share.
"""

from __future__ import annotations

import argparse
import os
import sys

from vicuna.serve import chat, decoding, engines

# gradio reports usage to its servers unless told not to: this page talks to nobody else.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def rounds_to_messages(rounds: list[tuple[str, str]]) -> list[dict]:
    """(human, gpt) rounds -> gr.Chatbot's messages."""
    messages = []
    for human, gpt in rounds:
        messages += [{"role": "user", "content": human}, {"role": "assistant", "content": gpt}]
    return messages


def dropped_notice(dropped: int, max_context_length: int) -> str:
    if not dropped:
        return ""
    rounds = "round" if dropped == 1 else "rounds"
    return (f"⚠️ The prompt leaves out the oldest {dropped} {rounds} of this conversation, to fit "
            f"the context length of {max_context_length} tokens (prompt + max new tokens).")


def slider_start(defaults: dict) -> dict:
    """Where the sliders start: where the engines would decode (OpenNMT-py's defaults for a key
    left out), with a greedy options file (top-k 1) shown as temperature 0, which means greedy
    on the page as in the README (top-k 1 at any temperature decodes the same)."""
    start = {**decoding.ONMT_DEFAULTS, **defaults}
    if start["random_sampling_topk"] == decoding.GREEDY:
        start["random_sampling_temp"] = 0.0
    return start


def launch(demo, a: argparse.Namespace) -> None:
    """gradio's launch without its console hints, which name its own API (`share=True`): this
    script's flags instead."""
    demo.queue().launch(
        server_name=a.host, server_port=a.server_port, share=a.share,
        auth=(a.username, a.password) if a.username else None,
        quiet=True, prevent_thread_lock=True,
    )
    print(f"* Running on local URL:  {demo.local_url}", flush=True)
    if not demo.share_url:
        print("* No public link (pass --share to make one)", flush=True)
    demo.block_thread()


def build_ui(model: engines.Engine, mode: str, max_context_length: int):
    import gradio as gr

    defaults = model.defaults
    start = slider_start(defaults)

    def respond(message: str, rounds: list[tuple[str, str]], temperature: float, top_k: int,
                top_p: float, max_new_tokens: int):
        # outputs: message box, chatbot, rounds, notice, last prompt
        if not message.strip():  # an empty message does nothing
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        try:
            text, dropped = chat.build_prompt(rounds, message, model.count_tokens,
                                              max_context_length, int(max_new_tokens))
        except ValueError as e:  # the message alone is over the budget: say so, keep it
            yield gr.skip(), gr.skip(), gr.skip(), f"**Not sent:** {e}", gr.skip()
            return
        notice = dropped_notice(dropped, max_context_length)
        settings = decoding.chosen(defaults, max_length=int(max_new_tokens),
                                   temperature=temperature, top_k=int(top_k), top_p=top_p)
        shown = rounds_to_messages(rounds) + [{"role": "user", "content": message}]

        def update(answer: str) -> tuple:
            # The rounds go out with each piece, so that after Stop (even before the first
            # token) the next prompt holds what the page shows.
            return ("", shown + [{"role": "assistant", "content": answer}],
                    [*rounds, (message, answer)], notice, text)

        yield update("")
        for answer in model.stream(text, settings):
            yield update(answer)

    with gr.Blocks(title="Vicuna chat", analytics_enabled=False) as demo:
        gr.Markdown(f"## Vicuna chat\n`{mode}` mode, context length {max_context_length} tokens")
        rounds = gr.State([])
        # no "share" button: it posts to Hugging Face, and this page talks to nobody else
        chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot", height=420,
                             buttons=["copy", "copy_all"])
        notice = gr.Markdown(elem_id="notice")
        with gr.Row():
            message = gr.Textbox(show_label=False, placeholder="Type a message, Enter to send",
                                 elem_id="message", scale=6, autofocus=True)
            send = gr.Button("Send", variant="primary", elem_id="send", scale=1)
            stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
            clear = gr.Button("Clear", elem_id="clear", scale=1)
        with gr.Accordion("Decoding", open=False):
            with gr.Row():
                temperature = gr.Slider(0.0, 2.0, value=start["random_sampling_temp"],
                                        step=0.05, label="Temperature (0: greedy)",
                                        elem_id="temperature")
                top_k = gr.Slider(0, 100, value=start["random_sampling_topk"], step=1,
                                  label="Top-k (1: greedy, 0: all tokens)", elem_id="top-k")
                top_p = gr.Slider(0.0, 1.0, value=start["random_sampling_topp"],
                                  step=0.05, label="Top-p (0: off)", elem_id="top-p")
                max_new = gr.Slider(1, max_context_length - 1,
                                    value=min(defaults["max_length"], max_context_length - 1),
                                    step=1, label="Max new tokens", elem_id="max-new-tokens")
        with gr.Accordion("Last prompt sent to the model", open=False):
            last_prompt = gr.Textbox(show_label=False, lines=8, max_lines=30, interactive=False,
                                     elem_id="last-prompt")

        inputs = [message, rounds, temperature, top_k, top_p, max_new]
        outputs = [message, chatbot, rounds, notice, last_prompt]
        # One reply at a time over the whole page, Enter or Send: one model, and OpenNMT-py's
        # engine holds per-call decoding settings.
        submitted = message.submit(respond, inputs, outputs, concurrency_id="chat")
        clicked = send.click(respond, inputs, outputs, concurrency_id="chat")
        stop.click(None, cancels=[submitted, clicked])
        clear.click(lambda: ("", [], [], "", ""), None, outputs, cancels=[submitted, clicked])
        # the chatbot's own trash icon clears the conversation the prompt is built from too
        chatbot.clear(lambda: ([], "", ""), None, [rounds, notice, last_prompt],
                      cancels=[submitted, clicked])
    return demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    chat.add_server_args(p, "prompt tokens + max new tokens")
    p.add_argument("-server_port", type=int, default=7860)
    p.add_argument("--username", help="with --password: ask for this login (basic auth)")
    p.add_argument("--password")
    p.add_argument("--share", action="store_true",
                   help="also make a public gradio.live link (off unless asked)")
    a = p.parse_args()

    if (a.username is None) != (a.password is None):
        sys.exit("error: --username and --password go together")
    if a.max_context_length < 2:
        sys.exit("error: -max_context_length must be at least 2")
    try:
        model = engines.load(a.inference_mode, a.inference_config_file)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    launch(build_ui(model, a.inference_mode, a.max_context_length), a)


if __name__ == "__main__":
    main()
