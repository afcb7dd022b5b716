#!/usr/bin/env python
"""Serve the finetuned model through an OpenAI-compatible API (/v1/chat/completions,
/v1/completions, /v1/models), in `ct2` (CTranslate2: concurrent requests generated together,
streamed token by token), `gguf` (llama.cpp: one request at a time, streamed token by token)
or `py` (OpenNMT-py: one request at a time) mode, from the same options file as the chatbot
(the tutorial's flags).

Listens on 127.0.0.1 unless --host says otherwise. With --api_key (or the VICUNA_API_KEY
environment variable, which keeps the key out of the process list) every request needs
"Authorization: Bearer <key>".
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from vicuna.serve import api, chat, serving


def log_to_stderr() -> None:
    """The package's log lines (batches, clients gone) beside uvicorn's; OpenNMT-py's logger
    keeps its own handler, so the root logger is left alone (no line twice)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logger = logging.getLogger("vicuna")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    chat.add_server_args(p, "prompt tokens + max_tokens")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api_key", default=os.environ.get("VICUNA_API_KEY") or None,
                   help="require this bearer key (default: $VICUNA_API_KEY; none: no key)")
    p.add_argument("--model_name",
                   help="the model id clients name (default: the model's file or folder name)")
    p.add_argument("--max_request_bytes", type=int, default=1 << 20)
    p.add_argument("--max_pending", type=int, default=64,
                   help="answers waiting or being generated, at most; more get 429")
    p.add_argument("--max_batch", type=int,
                   help="ct2: answers generated together, at most (default: options batch_size)")
    p.add_argument("--system_messages", choices=api.SYSTEM_MESSAGES, default="ignore",
                   help="what a chat's system messages become: ignore (default: left out, the "
                        "model's own task line kept; the x-ignored-system-messages header "
                        "counts them), task (the prompt's task line), refuse (400)")
    p.add_argument("--ignore_system_messages", dest="system_messages", action="store_const",
                   const="ignore", help="the same as --system_messages ignore")
    a = p.parse_args()

    if a.max_context_length < 2:
        sys.exit("error: -max_context_length must be at least 2")
    log_to_stderr()
    try:
        worker = serving.load(a.inference_mode, a.inference_config_file, a.max_batch)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    settings = api.Settings(
        model_name=a.model_name or Path(worker.engine.opts["model"]).name,
        max_context_length=a.max_context_length, api_key=a.api_key,
        max_request_bytes=a.max_request_bytes, max_pending=a.max_pending,
        system_messages=a.system_messages,
    )
    import uvicorn

    print(f"serving {settings.model_name!r} ({a.inference_mode}) on "
          f"http://{a.host}:{a.port}/v1", flush=True)
    try:
        uvicorn.run(api.build_app(worker, settings), host=a.host, port=a.port,
                    log_level="info", timeout_graceful_shutdown=5)
    finally:
        worker.close()


if __name__ == "__main__":
    main()
