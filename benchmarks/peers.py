#!/usr/bin/env python
"""The project's engines against their peers, on one model, in one run: inference (the `py`,
`ct2` and `gguf` modes through vicuna.serve.engines, transformers, and llama.cpp run directly on
the same GGUF files: F32, Q8_0, Q4_K_M, as the workflow's release_gguf writes them), each engine's
tokens/s against the limit this machine's memory bandwidth sets, CTranslate2's options side by
side, the chat's streaming, and LoRA finetuning against transformers + peft.

    .venv/bin/python benchmarks/peers.py                 # dim 512, 6 layers (53M), about 4 min
    .venv/bin/python benchmarks/peers.py --real_width    # LLaMA-7B's width, 2 layers (667M)
    [--skip_llamacpp] [--skip_finetune] [--skip_chat] [--skip_inference] [--skip_options]
    [--only LABEL ...]  (some inference engines only)

--real_width: dim 4096, FFN 11008, 32 heads (128 wide), 2 layers, 8 prompts x 32 forced tokens, batches 1
and 8, finetuning 2 x 128 tokens a step, the CTranslate2 options; the shape a token costs
what it costs in LLaMA-7B's layers (Python and kernel-launch overheads do not decide it).

One random LLaMA (models.py) in every engine's format (peers_prepare.py: the workflow's
conversion and releases); each engine in its own process
(engine_*.py, finetune_*.py; peak RSS from wait4), with --threads threads; the machine's
memory-read bandwidth measured in the same run (cpu_probe.py). peft and llama-cpp-python come
from benchmarks/requirements-peers.txt; without them their parts are skipped, saying why.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import common
import finetune_ours
import peers_report

Q8_0 = 34 / 32  # llama.cpp's Q8_0: 32 int8 weights and one float16 scale a block


@dataclass
class Engine:
    driver: str  # benchmarks/<driver>.py, run as a child
    model: str  # its model's key in the manifest
    # what a weight of the layers and the output layer takes there (None: its file's size over
    # the parameters, for the mixed types: Q4_K_M keeps some tensors in 6 bits)
    bytes_per_weight: float | None
    spec: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # environment variables of its process
    threads: int | None = None  # other than --threads
    prompts: int | None = None  # fewer than the others (a slow option: its rate, not its answers)


INFERENCE = {
    "py (OpenNMT-py fp32)": Engine("engine_project", "onmt", 4, {"mode": "py"}),
    "ct2 float32": Engine("engine_project", "ct2_float32", 4, {"mode": "ct2"}),
    "ct2 int8": Engine("engine_project", "ct2_int8", 1, {"mode": "ct2"}),
    "transformers fp32": Engine("engine_transformers", "hf", 4),
    "llama.cpp F32": Engine("engine_llamacpp", "gguf_f32", 4),
    "llama.cpp Q8_0": Engine("engine_llamacpp", "gguf_q8_0", Q8_0),
    "gguf Q8_0": Engine("engine_project", "gguf_q8_0", Q8_0, {"mode": "gguf"}),
    "llama.cpp Q4_K_M": Engine("engine_llamacpp", "gguf_q4_k_m", None),
    "gguf Q4_K_M": Engine("engine_project", "gguf_q4_k_m", None, {"mode": "gguf"}),
}
# CTranslate2's own options on a CPU, each beside "ct2 int8" (the release with compute_type
# default); what its 4.8.5 library reads (CT2_USE_MKL, CT2_PACKED_GEMM) and the config's keys
MKL = {"CT2_USE_MKL": "1"}
CT2_OPTIONS = {
    "ct2 int8, compute_type int8_float32": Engine(
        "engine_project", "ct2_int8", 1, {"mode": "ct2", "inference": {"compute_type": "int8_float32"}}),
    "ct2 int8, oneDNN, 1 thread": Engine("engine_project", "ct2_int8", 1, {"mode": "ct2"}, threads=1),
    # MKL on this AMD CPU is several times slower (BENCHMARKS.md): 2 prompts only
    "ct2 int8, MKL (CT2_USE_MKL=1; packed GEMM)": Engine(
        "engine_project", "ct2_int8", 1, {"mode": "ct2"}, MKL, prompts=2),
}
# the rest of MKL's (--more_options): unpacked, float32, int16 (MKL's alone)
MORE_OPTIONS = {
    "ct2 int8, MKL, CT2_PACKED_GEMM=0": Engine(
        "engine_project", "ct2_int8", 1, {"mode": "ct2"}, {**MKL, "CT2_PACKED_GEMM": "0"}, prompts=2),
    "ct2 float32, MKL": Engine("engine_project", "ct2_float32", 4, {"mode": "ct2"}, MKL, prompts=2),
    "ct2 int16 (float32 release, MKL only)": Engine(
        "engine_project", "ct2_float32", 2, {"mode": "ct2", "inference": {"compute_type": "int16"}},
        MKL, prompts=2),
}
SIZES = {  # --real_width's defaults, beside argparse's
    "dim": 4096, "layers": 2, "heads": 32, "prompts": 8, "new_tokens": 32, "batches": [1, 8],
    "ft_seq_length": 128, "ft_sequences": 2, "ft_warmup": 1, "ft_steps": 3,
}


def ct2_backends(log: Path) -> list[str]:
    """What CTranslate2 (CT2_VERBOSE=1) says it chose: "GEMM_S8 backend: DNNL (...)", ..."""
    wanted = ("Selected ISA", "Use Intel MKL", "SGEMM backend", "GEMM_S8 backend", "GEMM_S16 backend",
              "Selected compute type")
    lines = log.read_text(errors="replace").splitlines()
    return list(dict.fromkeys(line.split("[info]", 1)[1].strip(" -") for line in lines
                              if "[info]" in line and any(w in line for w in wanted)))


def reusable(built: dict, wanted: dict) -> bool:
    """Whether models built for `built` serve `wanted`: the same sizes, and the finetuning's
    data where it is wanted."""
    def sizes(spec: dict) -> dict:
        return {k: v for k, v in spec.items() if k != "finetune"}

    return sizes(built) == sizes(wanted) and wanted["finetune"] in (None, built["finetune"])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--real_width", action="store_true", help="LLaMA-7B's width: " + ", ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in SIZES.items()))
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, help="attention heads (default: 64 wide each)")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new_tokens", type=int, default=64, help="every answer exactly this long")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=2, help="for every engine (default: 2, the "
                   "cores of the project's machines)")
    p.add_argument("--ft_seq_length", type=int, default=256, help="finetuning: tokens a sequence")
    p.add_argument("--ft_sequences", type=int, default=4, help="finetuning: sequences a step")
    p.add_argument("--ft_warmup", type=int, default=3)
    p.add_argument("--ft_steps", type=int, default=10)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--peft_autocast", choices=["bfloat16"], help="also train peft under "
                   "torch.autocast(cpu, this dtype): only where the CPU computes in it (the probe's "
                   "matmul GFLOP/s say; without AVX512-BF16 or AMX bfloat16 is emulated, ~100x slower)")
    for part in ("llamacpp", "finetune", "chat", "inference", "options"):
        p.add_argument(f"--skip_{part}", action="store_true")
    p.add_argument("--only", nargs="+", metavar="LABEL", help="only these inference engines "
                   "(their labels, e.g. 'llama.cpp Q8_0' 'gguf Q8_0'), side by side")
    p.add_argument("--more_options", action="store_true", help="also MKL unpacked, float32 and "
                   "int16 (slow on AMD CPUs)")
    p.add_argument("--workdir", type=Path, help="keep the models and logs here (default: a "
                   "temporary folder, deleted)")
    p.add_argument("--reuse", action="store_true", help="with --workdir: the models it holds, if "
                   "built by the same command (the same sizes), instead of building them again")
    args = p.parse_args()
    if args.real_width:  # the preset, where a flag was not given
        given = {a.split("=")[0].lstrip("-") for a in sys.argv[1:] if a.startswith("--")}
        for key, value in SIZES.items():
            if key not in given:
                setattr(args, key, value)
    if args.ft_warmup < 1 or args.ft_steps < 1:
        p.error("--ft_warmup and --ft_steps: at least 1 (the timing starts at a step's report)")
    if 1 not in args.batches:
        p.error("--batches: 1 must be one of them (the goals are at batch 1 and the largest)")
    args.batches = sorted(set(args.batches))
    if args.only and (unknown := set(args.only) - set(INFERENCE)):
        p.error(f"--only {', '.join(sorted(unknown))}: not an engine of {sorted(INFERENCE)}")
    return args


def main() -> None:
    args = parse_args()
    started, load = time.monotonic(), os.getloadavg()
    env = common.thread_env(args.threads)
    with tempfile.TemporaryDirectory(prefix="peers.") as tmp_name:
        work = (args.workdir or Path(tmp_name)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        probe = common.run_child("cpu_probe", {"threads": args.threads}, work, env, "cpu_probe")
        if probe:
            print(f"memory read: {probe['bandwidth'] / 1e9:.1f} GB/s with {args.threads} threads",
                  flush=True)
        finetune = None if args.skip_finetune else {
            "lines": (args.ft_warmup + args.ft_steps + 2) * args.ft_sequences,
            "seq_length": args.ft_seq_length, "sequences": args.ft_sequences,
            "warmup": args.ft_warmup, "steps": args.ft_steps, "learning_rate": args.learning_rate}
        prepare = {"work": str(work), "dim": args.dim, "layers": args.layers, "heads": args.heads,
                   "prompts": args.prompts, "llamacpp": not args.skip_llamacpp,
                   "finetune": finetune}
        kept = work / "prepare.out.json"
        if args.reuse and kept.is_file() and reusable(json.loads((work / "prepare.spec.json").read_text()),
                                                      prepare):
            print(f"models: those {work} holds (--reuse)", flush=True)
            manifest = {**json.loads(kept.read_text()), "wall": 0.0}
        else:
            print("building the model in every format ...", flush=True)
            manifest = common.run_child("peers_prepare", prepare, work, env, "prepare")
        if manifest is None:
            sys.exit("error: the model could not be built")
        if args.skip_llamacpp:
            manifest["gguf_skip"] = "--skip_llamacpp"
        tok = "LLaMA's" if manifest["tokenizer"] == str(common.LLAMA_TOKENIZER) else "a fallback"
        print(f"model: {manifest['params'] / 1e6:.1f}M parameters (dim {args.dim}, {args.layers} "
              f"layers, {tok} tokenizer of {manifest['vocab']:,} pieces), built in "
              f"{manifest['wall']:.0f} s", flush=True)
        if "gguf_skip" in manifest:
            print(f"llama.cpp skipped: {manifest['gguf_skip']}", flush=True)

        engines = {} if args.skip_inference else {
            label: engine if engine.bytes_per_weight else dataclasses.replace(
                engine, bytes_per_weight=manifest["sizes"].get(engine.model, 0) / manifest["params"])
            for label, engine in INFERENCE.items() if not args.only or label in args.only}
        options = {} if args.skip_inference or args.skip_options else {
            **CT2_OPTIONS, **(MORE_OPTIONS if args.more_options else {})}
        results: dict[str, dict | None] = {}
        for label, engine in {**engines, **options}.items():
            if engine.model not in manifest:
                continue
            threads = engine.threads or args.threads
            spec = {"model": manifest[engine.model], "hf": manifest["hf"],
                    "tokenizer": manifest["tokenizer"],
                    "prompts": manifest["prompts"][:engine.prompts or len(manifest["prompts"])],
                    "new_tokens": args.new_tokens, "batches": args.batches, "threads": threads,
                    **engine.spec}
            name = "".join(c if c.isalnum() else "_" for c in label)
            # CT2_VERBOSE: CTranslate2 logs the ISA, GEMM backends and compute type it chose
            verbose = {"CT2_VERBOSE": "1"} if engine.spec.get("mode") == "ct2" else {}
            results[label] = r = common.run_child(
                engine.driver, spec, work, common.thread_env(threads, **verbose, **engine.env), name)
            if r is not None and verbose:
                r["ct2_backends"] = ct2_backends(work / f"{name}.log")
            if r is not None:
                print(f"  {label:<44} " + ", ".join(
                    f"batch {b}: {r['rates'][str(b)]:,.1f} tok/s" for b in args.batches)
                      + f", peak RSS {r['peak'] / 2**20:,.0f} MiB", flush=True)

        chat = None
        if not args.skip_chat:
            chat = common.run_child("engine_chat", {
                "model": manifest["ct2_int8"], "tokenizer": manifest["tokenizer"],
                "messages": manifest["messages"], "new_tokens": args.new_tokens,
                "threads": args.threads}, work, env, "chat")

        tuned: dict[str, dict | None] = {}
        if finetune:
            print("finetuning ...", flush=True)
            for label, config in (("the workflow's (OpenNMT-py, 8-bit FFN)", "ft_config"),
                                  ("the workflow's, float32 FFN (no quant_layers)", "ft_config_fp32")):
                config_path = Path(manifest[config])
                tuned[label] = finetune_ours.run(config_path, args.ft_warmup, args.ft_steps, env,
                                                 config_path.parent / "finetune_ours.log")
            if importlib.util.find_spec("peft") is None:
                print("peft skipped: not installed (pip install -r benchmarks/requirements-peers.txt)")
            else:
                for label, autocast in (("transformers + peft", None),
                                        (f"transformers + peft, autocast {args.peft_autocast}",
                                         args.peft_autocast)):
                    if autocast is None and label != "transformers + peft":
                        continue
                    tuned[label] = common.run_child("finetune_peft", {
                        "hf": manifest["hf"], "tokenizer": manifest["tokenizer"],
                        "data": manifest["ft_data"], "lora": manifest["ft_lora"],
                        "sequences": args.ft_sequences, "warmup": args.ft_warmup,
                        "steps": args.ft_steps, "learning_rate": args.learning_rate,
                        "threads": args.threads, "autocast": autocast}, work, env,
                        f"peft_{autocast or 'fp32'}")
        peers_report.report(args, manifest, probe, engines, results, options, chat, tuned)
    print(f"\n    {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"\n{time.monotonic() - started:.0f} s in all; load average at the start {load[0]:.1f}, "
          f"at the end {os.getloadavg()[0]:.1f} (1 minute; other work on the machine slows every "
          "engine)", flush=True)


if __name__ == "__main__":
    main()
