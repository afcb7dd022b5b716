#!/usr/bin/env python
"""A bounded load test of scripts/serve_api.py on 127.0.0.1: 1 client, then 8 clients at once,
each sending 20 chat requests through the `openai` package; then requests/s and generated
tokens/s of each. Every answer must come back complete (a finish_reason, the tokens it says)
and, decoding being greedy, the same under load as alone.

    .venv/bin/python benchmarks/api_load.py                      # a generated LLaMA, ct2
    .venv/bin/python benchmarks/api_load.py -inference_config_file translate_opts_ct2.yaml \\
        -inference_mode ct2                                       # the workflow's release

Without an options file, the model is the one of benchmarks/inference_speed.py (dim 512,
6 layers: 53M parameters with the LLaMA tokenizer's 32,000 pieces; float32 release), asked for
exactly --max_tokens tokens a request (min_length).
The server is started by this script and stopped at the end; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import models
import openai
import requests
from common import REPO, free_port


def generated_model(tmp: Path, max_tokens: int) -> Path:
    """inference_speed.py's LLaMA (models.build), released in float32, greedy (config.yaml's
    inference keys), answers of exactly max_tokens tokens."""
    manifest = models.build(tmp, dim=512, layers=6, quantizations=("float32",))
    print(f"model: generated LLaMA, {manifest['params'] / 1e6:.1f}M parameters, ct2 float32")
    opts = common.options("ct2", manifest["ct2_float32"], manifest["tokenizer"],
                          common.greedy(batch_size=16), forced=max_tokens)
    return common.write_options(tmp / "ct2_float32.yaml", opts)


def start_server(options: Path, mode: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(REPO / "scripts" / "serve_api.py"), "-inference_config_file",
           str(options), "-inference_mode", mode, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            sys.exit(f"error: serve_api.py exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/models", timeout=2).ok:
                return proc, url
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"error: serve_api.py did not answer in 300 s:\n{log.read_text()}")
        time.sleep(0.5)


def one_request(client: openai.OpenAI, model: str, question: str, max_tokens: int) -> dict:
    start = time.perf_counter()
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens)
    seconds = time.perf_counter() - start
    [choice] = reply.choices
    tokens = reply.usage.completion_tokens
    # complete: it ended for a reason, with the tokens it counts (all of them at "length")
    if choice.finish_reason not in ("stop", "length") or not 0 < tokens <= max_tokens or (
            choice.finish_reason == "length" and tokens != max_tokens):
        raise AssertionError(f"incomplete answer: {choice.finish_reason}, {tokens} tokens")
    return {"text": choice.message.content, "tokens": tokens, "seconds": seconds}


def phase(url: str, model: str, asks: list[str], clients: int, max_tokens: int) -> dict:
    """`clients` threads, each sending its share of `asks` one after the other."""
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda q: one_request(client, model, q, max_tokens), asks))
    seconds = time.perf_counter() - start
    tokens = sum(r["tokens"] for r in results)
    latencies = [r["seconds"] for r in results]
    print(f"{clients} client(s) x {len(asks) // clients} requests: {len(asks) / seconds:6.2f} "
          f"requests/s, {tokens / seconds:7.1f} tokens/s ({tokens} tokens in {seconds:.1f} s; "
          f"latency median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s)")
    return {"answers": [r["text"] for r in results], "tokens_per_s": tokens / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-inference_config_file", type=Path,
                   help="an options file (default: a generated model)")
    p.add_argument("-inference_mode", choices=["ct2", "py"], default="ct2")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=20, help="per client")
    p.add_argument("--max_tokens", type=int, default=32)
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        options = a.inference_config_file or generated_model(tmp, a.max_tokens)
        proc, url = start_server(options, a.inference_mode, tmp / "server.log")
        try:
            client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
            model = client.models.list().data[0].id
            asked = common.messages(a.requests, seed=3)
            one_request(client, model, asked[0], a.max_tokens)  # warm up
            alone = phase(url, model, asked, 1, a.max_tokens)
            loaded = phase(url, model, asked * a.clients, a.clients, a.max_tokens)
            if loaded["answers"] != alone["answers"] * a.clients:
                raise AssertionError("answers under load differ from the answers alone")
            print(f"all {len(asked) * (a.clients + 1)} answers complete and identical under "
                  f"load; {a.clients} clients / 1 client: "
                  f"{loaded['tokens_per_s'] / alone['tokens_per_s']:.1f}x tokens/s")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
