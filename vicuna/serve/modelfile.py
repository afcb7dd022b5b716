"""An Ollama Modelfile for a GGUF release: FROM the file beside it, the conversation TEMPLATE
(vicuna.prompt.ollama_template: the prompt vicuna.serve.chat.build_prompt makes), the stop at
the model's next "### Instruction:" round, and the options file's decoding defaults as Ollama's
parameters, meaning what they mean in the workflow's engines (vicuna.serve.decoding)."""

from __future__ import annotations

from vicuna import prompt
from vicuna.serve import options


def _quoted(text: str) -> str:
    """A Modelfile argument: "..." holding newlines as they are, as Ollama writes a parameter
    with a newline back (`ollama show --modelfile`); triple quotes where it holds a quote."""
    return f'"""{text}"""' if '"' in text else f'"{text}"'


def parameters(opts: dict, window: int | None = None) -> list[tuple[str, object]]:
    """Ollama's PARAMETER lines from an options file's decoding defaults. top-k 0 (no limit)
    and top-p 0 (off) are Ollama's top_k 0 and top_p 1; top-k 1 and temperature 0 are greedy
    in both. A model's sliding window caps the context: llama.cpp, under Ollama, does not keep
    the window, so no token may see past it (Ollama shifts its context instead)."""
    out: list[tuple[str, object]] = [("stop", prompt.STOP)]
    if "random_sampling_temp" in opts:
        out.append(("temperature", opts["random_sampling_temp"]))
    if "random_sampling_topk" in opts:
        out.append(("top_k", opts["random_sampling_topk"]))
    if "random_sampling_topp" in opts:
        out.append(("top_p", opts["random_sampling_topp"] or 1.0))
    if "max_length" in opts:
        out.append(("num_predict", opts["max_length"]))
    context = options.context_length(opts)  # LLaMA's 2048 unless the file says
    out.append(("num_ctx", min(context, window) if window else context))
    if opts.get("seed") is not None:
        out.append(("seed", opts["seed"]))
    return out


def modelfile(gguf_name: str, opts: dict, window: int | None = None) -> str:
    """The Modelfile's text, for a GGUF `gguf_name` in the same folder (`window`: the model's
    sliding window, as the file states it)."""
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(prompt.ollama_template())}"]
    for key, value in parameters(opts, window):
        lines.append(f"PARAMETER {key} {_quoted(value) if isinstance(value, str) else value}")
    return "\n".join(lines) + "\n"
