"""What several benchmarks need, once: the repository's paths, the tokenizer they build models
with, the greedy inference settings (config.yaml's `inference` keys, written into each mode's
options file by vicuna.serve.engines.options_file), the benchmark prompts, running a script or a
child process and measuring it, a free port.

Benchmarks run as `python benchmarks/<name>.py`: this folder is then on sys.path, and
`import common` finds this file; the `vicuna` package comes from the installed checkout
(`make install`), or PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
# The real LLaMA tokenizer (32,000 pieces) beside the checkout, where the project's machines have it
LLAMA_TOKENIZER = REPO.parent / "shared" / "fixtures" / "llama-tokenizer" / "tokenizer.model"
FALLBACK_VOCAB = 768  # config.yaml's synthetic.vocab_size: a user's clone trains its own
BOS, EOS = 1, 2  # LLaMA's <s> and </s>, as every tokenizer here has them (vicuna.tokenizer)


def tokenizer_model(work: Path) -> Path:
    """The LLaMA tokenizer where present; else a LLaMA-style one trained into `work` on the
    tiny default's synthetic texts (fewer than a thousand distinct pieces: the tiny's 768)."""
    if LLAMA_TOKENIZER.is_file():
        return LLAMA_TOKENIZER
    from vicuna import prompt, tokenizer
    from vicuna.tiny import synthetic

    path = work / "tokenizer.model"
    if not path.is_file():
        sets = synthetic.generate(1, 2000, 0, 1, 2000)
        tokenizer.train([prompt.alpaca(**r) for r in sets["alpaca"]], FALLBACK_VOCAB, path)
    return path


def config_inference() -> dict:
    """config.yaml's `inference` section, as the workflow's translate_opts rule reads it."""
    return yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))["inference"]


def greedy(**changes) -> dict:
    """config.yaml's `inference` keys with top-k 1 (vicuna.serve.decoding.GREEDY: greedy in both
    modes) and the benchmark's `changes` (batch_size, max_length, cpu_threads, ...)."""
    from vicuna.serve import decoding

    return {**config_inference(), "random_sampling_topk": decoding.GREEDY, **changes}


def options(mode: str, model: str | Path, tokenizer: str | Path, inference: dict,
            forced: int | None = None) -> dict:
    """The mode's options (translate_opts_<mode>.yaml as the workflow writes it) from
    `inference`; with `forced`, every answer is exactly that many tokens (min_length = max_length:
    no early </s>, so that every engine generates the same number of tokens)."""
    from vicuna.serve import engines

    opts = engines.options_file(mode, str(model), str(tokenizer), inference)
    if forced is not None:
        opts.update(max_length=forced, min_length=forced)
    return opts


def write_options(path: Path, opts: dict) -> Path:
    path.write_text(yaml.safe_dump(opts), encoding="utf-8")
    return path


def prompts(n: int, seed: int = 2) -> list[str]:
    """n Alpaca prompts (texts, real newlines) of held-out synthetic tasks, as the workflow's
    inference examples are laid out."""
    from vicuna import prompt
    from vicuna.tiny import synthetic

    held = synthetic.generate(seed, 1, 1, n, 1)["heldout"]
    return [prompt.alpaca(r["instruction"], r["input"], "") for r in held]


def messages(n: int, seed: int = 2) -> list[str]:
    """The same tasks as chat messages (instruction and input, as a user types them)."""
    from vicuna.tiny import synthetic

    held = synthetic.generate(seed, 1, 1, n, 1)["heldout"]
    return [f"{r['instruction']}\n{r['input']}".strip() for r in held]


def thread_env(threads: int, **extra: str) -> dict[str, str]:
    """The environment of a child engine: every thread pool an engine uses (torch's OpenMP,
    BLAS's where loaded) at `threads`."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", **extra}


def script(name: str, *args: str) -> None:
    """One of the project's scripts/, as the workflow runs it; its output shown only if it fails."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/{name} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")


def measure(cmd: list[str], log: Path | None = None, env: dict | None = None,
            cwd: Path | None = None) -> tuple[float, int, int]:
    """(seconds, peak RSS in bytes, exit status) of one subprocess (ru_maxrss from os.wait4: a
    child's starts from its parent's resident size at fork, so keep the parent small); its
    output goes to `log` (or is inherited)."""
    start = time.monotonic()
    out = log.open("w") if log else None
    try:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if out:
            out.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, usage.ru_maxrss * 1024, proc.returncode  # KiB on Linux


def run_child(module: str, spec: dict, work: Path, env: dict, name: str) -> dict | None:
    """benchmarks/<module>.py run as a child on `spec` (its own process: its own threads, its
    own peak RSS); its JSON result with `peak` and `wall`, or None with its log's tail printed."""
    spec_path, result_path, log = (work / f"{name}.{x}" for x in ("spec.json", "out.json", "log"))
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    seconds, peak, status = measure([sys.executable, str(BENCHMARKS / f"{module}.py"),
                                     str(spec_path), str(result_path)], log, env, cwd=work)
    if status != 0 or not result_path.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-10:]
        print(f"  {name}: failed (exit {status}), {log}:\n    " + "\n    ".join(tail), flush=True)
        return None
    result = json.loads(result_path.read_text())
    result.update(peak=peak, wall=seconds)
    return result


def child_main(run: Callable[[dict], dict]) -> None:
    """The `main` of a child module: `python benchmarks/<module>.py SPEC.json RESULT.json`."""
    if len(sys.argv) != 3:
        sys.exit(f"usage: {Path(sys.argv[0]).name} SPEC.json RESULT.json (run by a benchmark)")
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = run(spec)
    Path(sys.argv[2]).write_text(json.dumps(result))


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(result: dict, batch: int, n: int, prompts: int, seconds: float, first: float) -> None:
    """An engine's figures at one batch size, into `result`: `rates` (n tokens per prompt,
    end to end: the prefill included) and `decode_rates` (the n - 1 tokens after the first:
    seconds minus those of the same prompts with 1 new token, i.e. the prefill and first
    step), the figure a memory-bandwidth limit bounds."""
    result.setdefault("rates", {})[batch] = n * prompts / seconds
    result.setdefault("seconds", {})[batch] = seconds
    result.setdefault("first_token_seconds", {})[batch] = first
    if n > 1 and seconds > first:
        result.setdefault("decode_rates", {})[batch] = (n - 1) * prompts / (seconds - first)
