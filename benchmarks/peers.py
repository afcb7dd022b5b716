#!/usr/bin/env python
"""The project's engines against their peers, on one model, in one run (issue #14).

    .venv/bin/python benchmarks/peers.py [--skip_llamacpp] [--skip_finetune] [--skip_chat]

One random LLaMA (dim 512, 6 layers, LLaMA's 32,000-piece tokenizer from
../shared/fixtures/llama-tokenizer/ where present, else a 768-piece one trained here as
benchmarks/inference_speed.py does) is written once as a Hugging Face LlamaForCausalLM
(config.json + safetensors), then converted the workflow's way: scripts/convert_llama.py to
OpenNMT-py (`py`), scripts/release_model.py to CTranslate2 (`ct2` float32 and int8), and, for
llama.cpp, by llama.cpp's own convert_hf_to_gguf.py (F32 and Q8_0), taken from the
llama-cpp-python sdist of the installed version (fetched with pip) or --gguf_converter.

- Inference, batch 1 and 16: the same prompts, every engine generating exactly --new_tokens
  tokens per prompt (the project's modes through vicuna.inference.run with options files from
  vicuna.decoding and min_length = max_length; transformers' generate with
  min_new_tokens = max_new_tokens, greedy, float32; llama.cpp greedy through its Python bindings:
  batch 1 by Llama.generate, its context reset before every prompt so that it pays the prefill
  like the others, batch 16 by the bindings' low-level llama_decode on 16 sequences, since Llama
  holds one). Greedy outputs at batch 1 are compared with transformers', prompt by prompt.
- The chatbot's streaming path (vicuna.chat.load("ct2", ...).answer): time to first token and
  tokens/s while streaming.
- LoRA finetuning tokens/s: scripts/train.py with a config from vicuna.finetune_config (LoRA
  rank 8 on the four attention layers, 8-bit FFN, fp32, Adam) against transformers + peft
  (LoRA rank 8 on q, k, v, o, float32 FFN, Adam), the same token sequences (each exactly
  --seq_length tokens, --batch_sequences of them a step), timed over --ft_steps steps after
  --ft_warmup.

Every engine runs in its own process, with --threads threads (torch, CTranslate2, llama.cpp);
its peak resident memory is that process's ru_maxrss. This process imports no torch: a child's
ru_maxrss starts from its parent's resident size at fork. peft and llama-cpp-python come from
benchmarks/requirements-peers.txt; without llama-cpp-python (or its sdist), llama.cpp is skipped,
saying why.
About 4 minutes on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # vicuna from this checkout, installed or not
LLAMA_TOKENIZER = REPO.parent / "shared" / "fixtures" / "llama-tokenizer" / "tokenizer.model"
FALLBACK_VOCAB = 768  # config.yaml's synthetic.vocab_size, as inference_speed.py
BOS, EOS, PAD_ID = 1, 2, 0  # LLaMA's <s>, </s>; 0 (<unk>) only pads transformers' batches
SEED = 0

# label -> (kind, model key in the manifest); the order of the table
INFERENCE = {
    "py (OpenNMT-py fp32)": ("py", "onmt"),
    "ct2 float32": ("ct2", "ct2_float32"),
    "ct2 int8": ("ct2", "ct2_int8"),
    "transformers fp32": ("hf", "hf"),
    "llama.cpp F32": ("llamacpp", "gguf_f32"),
    "llama.cpp Q8_0": ("llamacpp", "gguf_q8_0"),
}
REFERENCE = "transformers fp32"  # greedy outputs are compared with this engine's


# ---------------------------------------------------------------------------------------------
# Children: each runs one step in its own process and writes its result as JSON


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def build(spec: dict) -> dict:
    """The model in every engine's format, the prompts and the finetuning sequences."""
    import random

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from vicuna import prompt, synthetic, tokenizer

    work = Path(spec["work"])
    if LLAMA_TOKENIZER.is_file():
        tok = LLAMA_TOKENIZER
    else:  # a user's clone: a LLaMA-style tokenizer of our own (inference_speed.py's fallback)
        sets = synthetic.generate(1, 2000, 0, 1, 2000)
        tokenizer.train([prompt.alpaca(**r) for r in sets["alpaca"]], FALLBACK_VOCAB,
                        work / "tok.model")
        tok = work / "tok.model"
    sp = tokenizer.load(tok)
    vocab = sp.get_piece_size()

    dim = spec["dim"]
    # Meta's FFN width for this dim (ModelArgs.hidden_dim, multiple_of 256): the same model as
    # inference_speed.py's
    hidden = 256 * ((int(2 * 4 * dim / 3) + 255) // 256)
    config = LlamaConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=hidden,
                         num_hidden_layers=spec["layers"], num_attention_heads=dim // 64,
                         num_key_value_heads=dim // 64, max_position_embeddings=2048,
                         rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=BOS,
                         eos_token_id=EOS)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    hf = work / "hf"
    model.save_pretrained(hf)
    (hf / "tokenizer.model").write_bytes(tok.read_bytes())  # llama.cpp's converter reads it
    del model

    def script(name: str, *args: str) -> None:
        subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], check=True,
                       stdout=subprocess.DEVNULL)

    script("convert_llama.py", "--model_dir", str(hf), "--tokenizer_model", str(tok),
           "--output", str(work / "model.pt"))
    script("extract_vocabulary.py", "-model", str(work / "model.pt"), "-out_file",
           str(work / "vocab.txt"))
    for q in ("float32", "int8"):
        script("release_model.py", "--model", str(work / "model.pt"), "--output",
               str(work / f"ct2_{q}"), "--quantization", q)
    manifest: dict[str, Any] = {
        "tokenizer": str(tok), "vocab_size": vocab, "params": params, "hf": str(hf),
        "onmt": str(work / "model.pt"), "vocab_txt": str(work / "vocab.txt"),
        "ct2_float32": str(work / "ct2_float32"), "ct2_int8": str(work / "ct2_int8"),
    }
    if spec["llamacpp"]:
        manifest.update(gguf(work, hf, spec.get("gguf_converter")))

    held = synthetic.generate(2, 1, 1, spec["prompts"], 1)["heldout"]
    manifest["prompts"] = [prompt.to_line(prompt.alpaca(r["instruction"], r["input"], ""))
                           for r in held]
    manifest["messages"] = [f"{r['instruction']}\n{r['input']}".strip() for r in held]

    # Finetuning sequences of exactly seq_length tokens (<s> + pieces), all different (OpenNMT-py
    # drops a repeated line within a batch): words that are one piece each ("▁word"), so that
    # the line's pieces are known without a tokenizer's merges across words.
    words = [p[1:] for i in range(vocab) if (p := sp.id_to_piece(i)).startswith("▁")
             and p[1:].isalpha() and len(p) > 2 and sp.encode(p[1:]) == [i]]
    rng = random.Random(SEED)
    pieces = spec["seq_length"] - 1
    lines = []
    for _ in range(spec["ft_lines"]):
        line = " ".join(rng.choice(words) for _ in range(pieces))
        assert len(sp.encode(line)) == pieces, line
        lines.append(line)
    (work / "ft.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest["ft_data"] = str(work / "ft.txt")
    write_finetune_config(spec, manifest, work)
    return manifest


def write_finetune_config(spec: dict, manifest: dict, work: Path) -> None:
    """work/finetune.yaml from vicuna.finetune_config, as the workflow's finetune_config rule
    writes it: LoRA rank 8 on the four attention layers, 8-bit FFN, fp32, Adam."""
    import yaml

    from vicuna.convert import read_shape
    from vicuna.finetune_config import finetune_config

    steps = spec["ft_warmup"] + spec["ft_steps"]
    tokens = spec["seq_length"] * spec["batch_sequences"]
    train = {
        "lora": {"layers": ["linear_values", "linear_query", "linear_keys", "final_linear"],
                 "rank": 8, "alpha": 16, "dropout": 0.0},
        "quantization": {"layers": ["w_1", "w_2", "w_3"], "type": "bnb_8bit"},
        # OpenNMT-py's filtertoolong keeps targets of at most seq_length - 2 pieces (room for
        # <s> and </s>) and ours have seq_length - 1
        "seq_length": spec["seq_length"] + 1, "precision": "fp32", "optim": "adam",
        "learning_rate": spec["learning_rate"], "warmup_steps": 0, "adam_beta2": 0.998,
        "max_grad_norm": 0.0, "batch_size": tokens, "valid_batch_size": tokens,
        "accum_count": 1, "bucket_size": 64, "num_workers": 0, "train_steps": steps,
        "save_checkpoint_steps": steps, "keep_checkpoint": 1, "valid_steps": steps,
        "report_every": 1, "seed": 1, "answer_loss_only": False,
    }
    cfg = finetune_config(
        shape=read_shape(manifest["hf"]), vocab_size=manifest["vocab_size"],
        corpora={"bench": {"path": manifest["ft_data"], "weight": 1}}, valid=None,
        tokenizer_model=manifest["tokenizer"], vocab=manifest["vocab_txt"],
        base_checkpoint=manifest["onmt"], save_model=str(work / "ft" / "model"),
        tensorboard_dir=str(work / "ft" / "tb"), train=train)
    (work / "finetune.yaml").write_text(yaml.safe_dump(cfg))


def gguf(work: Path, hf: Path, converter: str | None) -> dict:
    """F32 and Q8_0 GGUF files by llama.cpp's converter, or why there are none."""
    try:
        import llama_cpp
    except ImportError:
        return {"gguf_skip": "llama-cpp-python is not installed "
                             "(pip install -r benchmarks/requirements-peers.txt)"}
    if converter is None:
        # The converter is not in the installed package, only in the sdist (vendor/llama.cpp/),
        # with the gguf-py and conversion/ it imports: take those from the same version's sdist.
        version = llama_cpp.__version__
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "-d", str(work / "sdist"),
             f"llama-cpp-python=={version}"], capture_output=True, text=True)
        sdists = sorted((work / "sdist").glob("llama_cpp_python-*.tar.gz"))
        if not sdists:
            return {"gguf_skip": f"llama-cpp-python {version}'s sdist could not be fetched "
                                 f"for its converter ({got.stderr.strip()[-200:]})"}
        with tarfile.open(sdists[0]) as tar:
            root = tar.getnames()[0].split("/")[0] + "/vendor/llama.cpp/"
            wanted = [m for m in tar.getmembers() if m.name.startswith(root) and (
                m.name == root + "convert_hf_to_gguf.py"
                or m.name.startswith((root + "gguf-py/", root + "conversion/")))]
            tar.extractall(work / "sdist", members=wanted, filter="data")
        converter = str(work / "sdist" / root / "convert_hf_to_gguf.py")
        if not Path(converter).is_file():
            return {"gguf_skip": f"{sdists[0].name} has no vendor/llama.cpp/convert_hf_to_gguf.py"}
    out = {}
    for outtype, key in (("f32", "gguf_f32"), ("q8_0", "gguf_q8_0")):
        path = work / f"model-{outtype}.gguf"
        got = subprocess.run([sys.executable, converter, str(hf), "--outtype", outtype,
                              "--outfile", str(path)], capture_output=True, text=True)
        if got.returncode != 0 or not path.is_file():
            return {"gguf_skip": f"{converter} --outtype {outtype} failed: "
                                 f"{got.stderr.strip().splitlines()[-1:]}"}
        out[key] = str(path)
    return out


def prompt_ids(sp, line: str) -> list[int]:
    """What every engine reads: <s> + the sentencepiece ids (vicuna.inference.prompt_tokens)."""
    from vicuna import prompt

    return [BOS, *sp.encode(prompt.from_line(line))]


def infer_project(spec: dict) -> dict:
    """`py` or `ct2` through vicuna.inference.run, options written by vicuna.decoding."""
    import yaml

    from vicuna import decoding, inference, prompt

    set_threads(spec["threads"])
    mode, m, n = spec["kind"], spec["manifest"], spec["new_tokens"]
    prompts = m["prompts"]
    out: dict[str, Any] = {"rates": {}, "seconds": {}}
    for batch in spec["batches"]:
        settings = {"device": "cpu", "precision": "fp32", "compute_type": "default",
                    "cpu_threads": spec["threads"], "batch_size": batch, "beam_size": 1,
                    "max_length": n, "random_sampling_topk": 1, "random_sampling_topp": 0.0,
                    "random_sampling_temp": 1.0, "seed": 1}
        opts = decoding.options_file(mode, m[spec["model"]], m["tokenizer"], settings)
        opts["min_length"] = n  # every answer exactly n tokens: no early </s>
        path = Path(spec["work"]) / f"opts_{spec['model']}_{batch}.yaml"
        path.write_text(yaml.safe_dump(opts))
        inference.run(mode, path, prompts[:2])  # warm-up (run loads the model each call)
        answers, seconds = inference.run(mode, path, prompts)
        out["rates"][batch] = n * len(prompts) / seconds
        out["seconds"][batch] = seconds
        # ct2 counts its pieces, py re-encodes its text (about n each: not exact)
        out.setdefault("answer_tokens", {})[batch] = sum(a.tokens for a in answers)
        if mode == "ct2":
            assert all(a.tokens == n for a in answers), [a.tokens for a in answers]
        if batch == 1:
            out["texts"] = [prompt.from_line(a.text) for a in answers]
    return out


def infer_hf(spec: dict) -> dict:
    """transformers' generate, greedy, float32, exactly n new tokens (min_new_tokens)."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from vicuna import tokenizer

    set_threads(spec["threads"])
    m, n = spec["manifest"], spec["new_tokens"]
    sp = tokenizer.load(m["tokenizer"])
    model = LlamaForCausalLM.from_pretrained(m["hf"], dtype=torch.float32).eval()
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=n, min_new_tokens=n,
                              bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD_ID)
    ids = [prompt_ids(sp, line) for line in m["prompts"]]

    def generate(group: list[list[int]]) -> list[list[int]]:
        width = max(map(len, group))  # left padding: every prompt ends where generation starts
        inputs = torch.tensor([[PAD_ID] * (width - len(x)) + x for x in group])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in group])
        with torch.inference_mode():
            out = model.generate(input_ids=inputs, attention_mask=mask, generation_config=config)
        return out[:, width:].tolist()

    result: dict[str, Any] = {"rates": {}, "seconds": {}}
    for batch in spec["batches"]:
        generate(ids[:batch][:2])  # warm-up
        start = time.perf_counter()
        new = [t for i in range(0, len(ids), batch) for t in generate(ids[i:i + batch])]
        seconds = time.perf_counter() - start
        assert all(len(t) == n for t in new), [len(t) for t in new]
        result["rates"][batch] = n * len(ids) / seconds
        result["seconds"][batch] = seconds
        if batch == 1:
            result["texts"] = [sp.decode(t) for t in new]
    return result


def amx_tiles_usable() -> bool:
    """False where the CPU says AMX but the kernel has not enabled its tile data (XTILEDATA,
    xfeature 18): seen on this project's VMs, where llama.cpp's AMX kernels for Q8_0 then die
    of SIGILL (its own check, arch_prctl ARCH_REQ_XCOMP_PERM, returns success there)."""
    import ctypes

    try:
        if "amx_tile" not in Path("/proc/cpuinfo").read_text():
            return True
        supported = ctypes.c_ulong(0)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(158, 0x1022, ctypes.byref(supported)) != 0:  # ARCH_GET_XCOMP_SUPP
            return True
        return bool(supported.value & (1 << 18))
    except OSError:
        return True


def infer_llamacpp(spec: dict) -> dict:
    """llama.cpp through llama-cpp-python: greedy, n tokens, the context reset per prompt."""
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    from vicuna import tokenizer

    note = None
    if not amx_tiles_usable():
        # Without llama.cpp's extra buffer types its AMX path is not taken; on x86 Q8_0 and
        # F32 have no other (no repacking for them), so nothing else changes.
        defaults = lib.llama_model_default_params

        def no_extra_bufts() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = no_extra_bufts
        note = ("AMX off: the CPU reports AMX but the kernel does not enable its tile data, and "
                "llama.cpp's AMX kernels die of SIGILL; loaded with use_extra_bufts=False")
    m, n = spec["manifest"], spec["new_tokens"]
    sp = tokenizer.load(m["tokenizer"])
    ids = [prompt_ids(sp, line) for line in m["prompts"]]
    llm = Llama(model_path=m[spec["model"]], n_ctx=max(map(len, ids)) + n + 16, n_batch=512,
                n_threads=spec["threads"], n_threads_batch=spec["threads"], seed=1,
                verbose=False)

    def generate(x: list[int]) -> list[int]:
        llm.reset()  # no prefix reuse from the previous prompt: the prefill is paid every time
        out = []
        for token in llm.generate(x, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(token)  # </s> does not stop it: exactly n tokens, as the others
            if len(out) == n:
                break
        return out

    for x in ids[:2]:
        generate(x)  # warm-up
    start = time.perf_counter()
    new = [generate(x) for x in ids]
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"rates": {1: n * len(ids) / seconds}, "seconds": {1: seconds},
                              "texts": [sp.decode(t) for t in new], "note": note}
    if 16 in spec["batches"]:
        batched = llamacpp_batched(llm, ids, n, spec["threads"])
        result["rates"][16] = n * len(ids) / batched
        result["seconds"][16] = batched
    return result


def llamacpp_batched(llm: Any, ids: list[list[int]], n: int, threads: int) -> float:
    """Seconds to generate n tokens (greedy) for all prompts as one batch of sequences, as
    llama.cpp's `batched` example and its server's parallel slots do: the bindings' Llama
    has one sequence, so this uses their low-level API on the same loaded model."""
    import llama_cpp
    import numpy as np

    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = len(ids)
    params.n_ctx = len(ids) * (max(map(len, ids)) + n + 16)
    params.n_batch = max(sum(map(len, ids)), len(ids))
    params.n_threads = params.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
    vocab = llm.n_vocab()

    def decode(entries: list[tuple[int, int, int, bool]]) -> list[int]:
        """(token, position, sequence, wants logits) -> the argmax of each wanted row."""
        for i, (token, pos, seq, wants) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, wants
        batch.n_tokens = len(entries)
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return [int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i),
                                          shape=(vocab,)).argmax())
                for i, e in enumerate(entries) if e[3]]

    def generate(group: list[list[int]]) -> list[list[int]]:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        last = decode([(t, pos, s, pos == len(x) - 1) for s, x in enumerate(group)
                       for pos, t in enumerate(x)])
        out = [[t] for t in last]
        for k in range(1, n):
            last = decode([(t, len(x) + k - 1, s, True) for s, (x, t) in enumerate(zip(group, last,
                                                                                        strict=True))])
            for o, t in zip(out, last, strict=True):
                o.append(t)
        return out

    try:
        generate(ids[:2])  # warm-up
        start = time.perf_counter()
        generate(ids)
        return time.perf_counter() - start
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def chat_stream(spec: dict) -> dict:
    """The chatbot's ct2 path: time to first token and tokens/s while streaming."""
    import statistics

    import yaml

    from vicuna import chat, decoding, inference

    set_threads(spec["threads"])
    m, n = spec["manifest"], spec["new_tokens"]
    settings = {"device": "cpu", "precision": "fp32", "compute_type": "default",
                "cpu_threads": spec["threads"], "batch_size": 1, "beam_size": 1,
                "max_length": n, "random_sampling_topk": 1, "random_sampling_topp": 0.0,
                "random_sampling_temp": 1.0, "seed": 1}
    path = Path(spec["work"]) / "opts_chat.yaml"
    path.write_text(yaml.safe_dump(decoding.options_file("ct2", m[spec["model"]], m["tokenizer"],
                                                         settings)))

    # Count the tokens CTranslate2 generates under the chat's own loop (its stream shows text,
    # and stops at </s> or the stop rule): wrap the generator that inference.load_ct2 gives.
    counted = {"tokens": 0}
    load_ct2 = inference.load_ct2

    class Counting:
        def __init__(self, generator: Any) -> None:
            self.generator = generator

        def generate_tokens(self, *args: Any, **kwargs: Any):
            inner = self.generator.generate_tokens(*args, **kwargs)

            def steps():
                try:
                    for step in inner:
                        counted["tokens"] += 1
                        yield step
                finally:
                    inner.close()

            return steps()

    def counting_load(opts: dict) -> tuple[Counting, Any]:
        generator, sp = load_ct2(opts)
        return Counting(generator), sp

    inference.load_ct2 = counting_load
    model = chat.load("ct2", path)
    context = inference.context_length(inference.load_options(path))

    def one(message: str) -> tuple[float, float, int]:
        text, _ = chat.build_prompt([], message, model.count_tokens, context, n)
        counted["tokens"] = 0
        start = time.perf_counter()
        stream = model.answer(text, model.decoding)
        next(stream)
        first = time.perf_counter() - start
        for _ in stream:
            pass
        return first, time.perf_counter() - start, counted["tokens"]

    one(m["messages"][0])  # warm-up
    runs = [one(message) for message in m["messages"]]
    after_first = sum(t - f for f, t, _ in runs)
    return {"ttft_median": statistics.median(f for f, _, _ in runs),
            "ttft_max": max(f for f, _, _ in runs),
            "tokens": sum(k for _, _, k in runs),
            "stream_rate": sum(k - 1 for _, _, k in runs) / after_first,
            "overall_rate": sum(k for _, _, k in runs) / sum(t for _, t, _ in runs)}


def finetune_peft(spec: dict) -> dict:
    """transformers + peft: LoRA rank 8 on q, k, v, o, float32, Adam, the same sequences."""
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from vicuna import tokenizer

    set_threads(spec["threads"])
    m, b = spec["manifest"], spec["batch_sequences"]
    sp = tokenizer.load(m["tokenizer"])
    lines = Path(m["ft_data"]).read_text(encoding="utf-8").splitlines()
    model = LlamaForCausalLM.from_pretrained(m["hf"], dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    model.train()
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                             lr=spec["learning_rate"], betas=(0.9, 0.998))

    def step(i: int) -> int:
        # OpenNMT-py's LM: the model reads <s> + pieces and predicts pieces + </s>
        pieces = [sp.encode(line) for line in lines[i * b:(i + 1) * b]]
        inputs = torch.tensor([[BOS, *p] for p in pieces])
        targets = torch.tensor([[*p, EOS] for p in pieces])
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return targets.numel()

    for i in range(spec["ft_warmup"]):
        step(i)
    start = time.perf_counter()
    tokens = sum(step(spec["ft_warmup"] + i) for i in range(spec["ft_steps"]))
    seconds = time.perf_counter() - start
    return {"rate": tokens / seconds, "tokens": tokens, "seconds": seconds,
            "tokens_per_step": tokens // spec["ft_steps"]}


CHILDREN = {"build": build, "py": infer_project, "ct2": infer_project, "hf": infer_hf,
            "llamacpp": infer_llamacpp, "chat": chat_stream, "peft": finetune_peft}


# ---------------------------------------------------------------------------------------------
# The parent: runs each child, measures it, prints the tables


def measure(cmd: list[str], log: Path, env: dict) -> tuple[float, int, int]:
    """(seconds, peak RSS in bytes, exit status) of one subprocess, its output in `log`."""
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, usage.ru_maxrss * 1024, proc.returncode  # KiB on Linux


def run_child(step: str, spec: dict, work: Path, env: dict, name: str) -> dict | None:
    """The child's result with its peak RSS and seconds, or None (its log's tail printed)."""
    spec_path, result_path, log = (work / f"{name}.{x}" for x in ("spec.json", "out.json", "log"))
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    seconds, peak, status = measure([sys.executable, __file__, "--child", step, str(spec_path),
                                     str(result_path)], log, env)
    if status != 0 or not result_path.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-8:]
        print(f"  {name}: failed (exit {status}), {log}:\n    " + "\n    ".join(tail), flush=True)
        return None
    result = json.loads(result_path.read_text())
    result.update(peak=peak, wall=seconds)
    return result


def finetune_ours(args: argparse.Namespace, work: Path, env: dict) -> dict | None:
    """scripts/train.py on the config the build step wrote (vicuna.finetune_config): tokens/s
    from OpenNMT-py's per-step reports (report_every 1), the steps after the warm-up."""
    steps = args.ft_warmup + args.ft_steps
    config = work / "finetune.yaml"
    log = work / "finetune_ours.log"
    seconds, peak, status = measure([sys.executable, str(REPO / "scripts" / "train.py"),
                                     "-config", str(config), "-no_resume"], log, env)
    text = log.read_text(errors="replace")
    # "[2026-11-29 18:38:13,599 INFO] Step  2/   13; acc: ...; bsz:  1024/ 1024/ 4; ..." : the
    # time between the reports of the warm-up's last step and the last step, to the millisecond
    reports = {int(step): (stamp, float(tgt)) for stamp, step, tgt in re.findall(
        r"\[(\S+ \S+) INFO\] Step\s+(\d+)/\s*\d+;.*?bsz:\s*[\d.]+/\s*([\d.]+)/", text)}
    if status != 0 or any(s not in reports for s in range(args.ft_warmup, steps + 1)):
        tail = text.strip().splitlines()[-8:]
        print(f"  finetune (ours): failed (exit {status}, {len(reports)} step reports), "
              f"{log}:\n    " + "\n    ".join(tail), flush=True)
        return None

    def at(step: int) -> float:
        return time.mktime(time.strptime(reports[step][0][:19], "%Y-%m-%d %H:%M:%S")) + \
            int(reports[step][0][20:]) / 1000

    n = sum(reports[s][1] for s in range(args.ft_warmup + 1, steps + 1))
    seconds_measured = at(steps) - at(args.ft_warmup)
    return {"rate": n / seconds_measured, "tokens": n, "seconds": seconds_measured,
            "tokens_per_step": n / args.ft_steps, "peak": peak, "wall": seconds}


def fmt_rate(r: dict | None, batch: int) -> str:
    if r is None:
        return "failed"
    rate = r["rates"].get(str(batch))
    return "n/a" if rate is None else f"{rate:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.2f}x"


def rate_of(results: dict, label: str, batch: int) -> float | None:
    r = results.get(label)
    return None if r is None else r["rates"].get(str(batch))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="for every engine (default: 2, the "
                   "cores of the project's machines)")
    p.add_argument("--seq_length", type=int, default=256, help="finetuning: tokens a sequence")
    p.add_argument("--batch_sequences", type=int, default=4, help="finetuning: sequences a step")
    p.add_argument("--ft_warmup", type=int, default=3)
    p.add_argument("--ft_steps", type=int, default=10)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--skip_llamacpp", action="store_true")
    p.add_argument("--skip_finetune", action="store_true")
    p.add_argument("--skip_chat", action="store_true")
    p.add_argument("--skip_inference", action="store_true", help="batch inference (not the chat)")
    p.add_argument("--gguf_converter", help="llama.cpp's convert_hf_to_gguf.py (default: from the "
                   "sdist of the installed llama-cpp-python, fetched with pip)")
    p.add_argument("--workdir", type=Path, help="keep the models and logs here (default: a "
                   "temporary folder, deleted)")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # STEP SPEC RESULT
    args = p.parse_args()
    if args.ft_warmup < 1 or args.ft_steps < 1:
        p.error("--ft_warmup and --ft_steps: at least 1 (the timing starts at a step's report)")
    if args.gguf_converter:  # the children run in the work folder
        args.gguf_converter = str(Path(args.gguf_converter).resolve())
    if args.child:
        step, spec_path, result_path = args.child
        result = CHILDREN[step](json.loads(Path(spec_path).read_text()))
        Path(result_path).write_text(json.dumps(result))
        return

    started, load = time.monotonic(), os.getloadavg()
    # Every thread pool the engines use: torch's (OpenMP), and BLAS's where one is loaded.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="peers.") as tmp_name:
        work = args.workdir or Path(tmp_name)
        work.mkdir(parents=True, exist_ok=True)
        work = work.resolve()
        spec = {"work": str(work), "dim": args.dim, "layers": args.layers,
                "prompts": args.prompts, "seq_length": args.seq_length,
                "ft_lines": (args.ft_warmup + args.ft_steps + 2) * args.batch_sequences,
                "batch_sequences": args.batch_sequences, "ft_warmup": args.ft_warmup,
                "ft_steps": args.ft_steps, "learning_rate": args.learning_rate,
                "llamacpp": not args.skip_llamacpp, "gguf_converter": args.gguf_converter}
        print("building the model in every format ...", flush=True)
        manifest = run_child("build", spec, work, env, "build")
        if manifest is None:
            sys.exit("error: the model could not be built")
        tok = "LLaMA's" if manifest["tokenizer"] == str(LLAMA_TOKENIZER) else "fallback"
        print(f"model: {manifest['params'] / 1e6:.1f}M parameters (dim {args.dim}, {args.layers} "
              f"layers, {tok} tokenizer of {manifest['vocab_size']:,} pieces), built in "
              f"{manifest['wall']:.0f} s; {len(manifest['prompts'])} prompts x {args.new_tokens} "
              f"new tokens; {args.threads} threads", flush=True)
        if args.skip_llamacpp:
            manifest["gguf_skip"] = "--skip_llamacpp"
        if "gguf_skip" in manifest:
            print(f"llama.cpp skipped: {manifest['gguf_skip']}", flush=True)

        results: dict[str, dict | None] = {}
        for label, (kind, model) in INFERENCE.items():
            if model not in manifest or args.skip_inference:
                continue
            results[label] = run_child(
                kind, {"work": str(work), "manifest": manifest, "kind": kind, "model": model,
                       "threads": args.threads, "new_tokens": args.new_tokens,
                       "batches": [1, 16]}, work, env, label.split(" (")[0].replace(" ", "_"))
            r = results[label]
            if r is not None:
                counted = r.get("answer_tokens", {})
                print(f"  {label:<22} batch 1: {fmt_rate(r, 1):>7} tok/s, batch 16: "
                      f"{fmt_rate(r, 16):>7} tok/s, peak RSS {r['peak'] / 2**20:,.0f} MiB"
                      + (f" (answers' own token counts: {counted})" if counted else "")
                      + (f" ({r['note']})" if r.get("note") else ""), flush=True)

        chat = None
        if not args.skip_chat:
            chat = run_child("chat", {"work": str(work), "manifest": manifest, "model": "ct2_int8",
                                      "threads": args.threads, "new_tokens": args.new_tokens},
                             work, env, "chat")

        ours = peft = None
        if not args.skip_finetune:
            print("finetuning ...", flush=True)
            ours = finetune_ours(args, work, env)
            if importlib.util.find_spec("peft") is None:
                print("peft skipped: not installed (pip install -r benchmarks/requirements-peers.txt)")
            else:
                peft = run_child("peft", {"work": str(work), "manifest": manifest,
                                          "threads": args.threads,
                                          "batch_sequences": args.batch_sequences,
                                          "ft_warmup": args.ft_warmup, "ft_steps": args.ft_steps,
                                          "learning_rate": args.learning_rate}, work, env, "peft")
        report(args, manifest, results, chat, ours, peft)
    print(f"\n{time.monotonic() - started:.0f} s in all; load average at the start "
          f"{load[0]:.1f}, at the end {os.getloadavg()[0]:.1f} (1 minute; other work on the "
          "machine slows every engine)", flush=True)


def report(args: argparse.Namespace, manifest: dict, results: dict, chat: dict | None,
           ours: dict | None, peft: dict | None) -> None:
    n = args.new_tokens * len(manifest["prompts"])
    print(f"\n### Inference: {len(manifest['prompts'])} prompts x {args.new_tokens} new tokens "
          f"({n:,} tokens per batch size), greedy, {args.threads} threads\n")
    reference = results.get(REFERENCE)
    print(f"| engine | batch 1 tok/s | batch 16 tok/s | peak RSS | greedy = {REFERENCE} |")
    print("|---|---|---|---|---|")
    for label, r in results.items():
        same = "n/a"
        if r is not None and reference is not None and label != REFERENCE:
            agree = sum(a.strip() == b.strip() for a, b in zip(r["texts"], reference["texts"],
                                                              strict=True))
            same = f"{agree}/{len(r['texts'])}"
        elif label == REFERENCE:
            same = "(reference)"
        peak = "" if r is None else f"{r['peak'] / 2**20:,.0f} MiB"
        print(f"| {label} | {fmt_rate(r, 1)} | {fmt_rate(r, 16)} | {peak} | {same} |")
    if "gguf_skip" in manifest:
        print(f"\nllama.cpp: skipped ({manifest['gguf_skip']})")
    elif any(label.startswith("llama.cpp") for label in results):
        print("\nllama.cpp: batch 1 through llama-cpp-python's Llama.generate (context reset per "
              "prompt); batch 16 through its low-level API (llama_decode on 16 sequences)")
        notes = {r["note"] for label, r in results.items() if r and r.get("note")}
        for note in notes:
            print(f"llama.cpp: {note}")

    if chat is not None:
        print(f"\n### Chat (vicuna.chat, ct2 int8, streaming, up to {args.new_tokens} new tokens, "
              f"{len(manifest['messages'])} messages)\n")
        print("| time to first token, median / max | tokens/s while streaming | "
              "tokens/s incl. first token | peak RSS |")
        print("|---|---|---|---|")
        print(f"| {chat['ttft_median'] * 1000:.0f} / {chat['ttft_max'] * 1000:.0f} ms | "
              f"{chat['stream_rate']:,.0f} | {chat['overall_rate']:,.0f} | "
              f"{chat['peak'] / 2**20:,.0f} MiB |")

    if ours is not None or peft is not None:
        print(f"\n### LoRA finetuning, rank 8 on q/k/v/o, fp32, Adam: {args.batch_sequences} x "
              f"{args.seq_length} tokens a step, {args.ft_steps} steps after {args.ft_warmup}\n")
        print("| engine | tokens/s | peak RSS |")
        print("|---|---|---|")
        for label, r in (("project (OpenNMT-py, scripts/train.py, 8-bit FFN)", ours),
                         ("transformers + peft (float32 FFN)", peft)):
            print(f"| {label} | " + ("failed | |" if r is None else
                                     f"{r['rate']:,.0f} | {r['peak'] / 2**20:,.0f} MiB |"))

    int8 = "ct2 int8"
    rows = [
        ("ct2 int8 / transformers, batch 1", rate_of(results, int8, 1),
         rate_of(results, REFERENCE, 1), 3.0),
        ("ct2 int8 / transformers, batch 16", rate_of(results, int8, 16),
         rate_of(results, REFERENCE, 16), 3.0),
        ("ct2 int8 / llama.cpp Q8_0, batch 1", rate_of(results, int8, 1),
         rate_of(results, "llama.cpp Q8_0", 1), 1.0),
        ("project finetuning / peft", ours and ours["rate"], peft and peft["rate"], 1.2),
    ]
    print("\n### Ratios against the issue's goals\n")
    print("| ratio | measured | goal | |")
    print("|---|---|---|---|")
    for label, a, b, goal in rows:
        verdict = "n/a" if a is None or b is None else ("met" if a / b >= goal else "**missed**")
        print(f"| {label} | {ratio(a, b)} | >= {goal:g}x | {verdict} |")
    print(f"\n    {shlex.join([Path(sys.executable).name, *sys.argv])}")


if __name__ == "__main__":
    main()
