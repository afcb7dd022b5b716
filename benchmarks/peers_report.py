"""peers.py's report: the machine, each engine's tokens/s against the limit the machine's
memory bandwidth sets for the bytes of weights it reads per step, the chat, the finetuning,
and the goals. Markdown tables, as BENCHMARKS.md carries them.
"""

from __future__ import annotations

from collections.abc import Callable

REFERENCE = "transformers fp32"  # greedy answers are compared with this engine's
OURS = "ct2 int8"  # the project's release as the workflow makes and serves it


def streamed_bytes(manifest: dict, bytes_per_weight: float) -> float:
    """Bytes of weights one decoding step reads: every weight but the embedding table (one row
    of it), norms in float32."""
    d, layers, vocab = manifest["dim"], manifest["layers"], manifest["vocab"]
    norms = (2 * layers + 1) * d
    matrices = manifest["params"] - vocab * d - norms  # the layers' and the output layer's
    return bytes_per_weight * (matrices + d) + 4 * norms


def limit(manifest: dict, bandwidth: float, bytes_per_weight: float, batch: int) -> float:
    """Tokens/s the bandwidth allows: one step reads the weights once for `batch` sequences."""
    return batch * bandwidth / streamed_bytes(manifest, bytes_per_weight)


def rate(results: dict, label: str, batch: int, key: str = "rates") -> float | None:
    r = results.get(label)
    return None if r is None else r.get(key, {}).get(str(batch))


def fmt(x: float | None, spec: str = ",.1f") -> str:
    return "n/a" if x is None else format(x, spec)


def agreement(results: dict, label: str) -> str:
    r, ref = results.get(label), results.get(REFERENCE)
    if label == REFERENCE:
        return "(reference)"
    if r is None or ref is None or "texts" not in r or "texts" not in ref:
        return "n/a"
    same = sum(a.strip() == b.strip() for a, b in zip(r["texts"], ref["texts"], strict=False))  # its prompts
    return f"{same}/{len(r['texts'])}"


def inference_table(title: str, engines: dict, results: dict, manifest: dict, probe: dict | None,
                    batches: list[int], out: Callable[[str], None]) -> None:
    bandwidth = probe and probe["bandwidth"]
    out(f"\n### {title}\n")
    head = ["engine", "weights read a step"]
    for b in batches:
        head += [f"batch {b} tok/s", f"batch {b} decode tok/s", f"batch {b} limit",
                 f"batch {b} share"]
    out("| " + " | ".join(head + ["peak RSS", f"greedy = {REFERENCE}"]) + " |")
    out("|" + "---|" * (len(head) + 2))
    for label, engine in engines.items():
        if label not in results:
            continue
        r = results[label]
        row = [label, f"{streamed_bytes(manifest, engine.bytes_per_weight) / 1e9:.2f} GB"]
        for b in batches:
            decode = rate(results, label, b, "decode_rates")
            top = bandwidth and limit(manifest, bandwidth, engine.bytes_per_weight, b)
            row += [fmt(rate(results, label, b)), fmt(decode), fmt(top),
                    "n/a" if not (decode and top) else f"{decode / top:.0%}"]
        row += ["failed" if r is None else f"{r['peak'] / 2**20:,.0f} MiB", agreement(results, label)]
        out("| " + " | ".join(row) + " |")


def report(args, manifest: dict, probe: dict | None, engines: dict, results: dict,
           options: dict, chat: dict | None, finetune: dict, out: Callable[[str], None] = print,
           ) -> None:
    n, prompts = args.new_tokens, len(manifest["prompts"])
    if probe:
        flags = ", ".join(f for f, on in probe["flags"].items() if on) or "none of those looked for"
        out(f"\n### The machine\n\n{probe['cpu']}; {flags}; CTranslate2's CPU compute types: "
            f"{', '.join(probe['ct2_compute_types'])}; memory read {probe['bandwidth'] / 1e9:.1f} "
            f"GB/s with {probe['threads']} threads (a torch sum over {probe['buffer_gb']:g} GB, "
            "best of 5); a torch matmul [{0}, {1}] x [{1}, {2}]: ".format(*probe["matmul"]) + ", ".join(
                f"{dtype} {gflops:.1f} GFLOP/s" for dtype, gflops in probe["matmul_gflops"].items()))
    sizes = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in manifest.get("sizes", {}).items())
    out(f"\nModel: {manifest['params'] / 1e6:.0f}M parameters (dim {manifest['dim']}, "
        f"{manifest['layers']} layers, FFN {manifest['ffn']}, {manifest['heads']} heads, "
        f"vocabulary {manifest['vocab']:,}); files: {sizes}")
    out(f"\nEvery answer exactly {n} new tokens ({prompts} prompts, {n * prompts:,} tokens per "
        f"batch size), greedy, {args.threads} threads. tok/s: end to end, prefill included; "
        f"decode tok/s: the {n - 1} tokens after the first (the time of the same prompts with one "
        "new token taken off); limit: the memory bandwidth / the weights one step reads (x the "
        "batch: a step reads them once for all its sequences); share: decode tok/s / limit.")
    inference_table("Inference", engines, results, manifest, probe, args.batches, out)
    if options:
        inference_table("CTranslate2's options, side by side (the int8 release unless said)",
                        options, results, manifest, probe, args.batches, out)
    chosen: dict[str, list[str]] = {}  # what CTranslate2 logged it chose -> the engines
    for label, r in results.items():
        if r and r.get("ct2_backends"):
            chosen.setdefault("; ".join(r["ct2_backends"]), []).append(label)
    for said, labels in chosen.items():
        out(f"\n{', '.join(labels)}: CTranslate2 (CT2_VERBOSE=1) says {said}")
    if "gguf_skip" in manifest:
        out(f"\nllama.cpp: skipped ({manifest['gguf_skip']})")
    for note in {r["note"] for r in results.values() if r and r.get("note")}:
        out(f"\nllama.cpp: {note}")

    if chat is not None:
        out(f"\n### Chat (vicuna.serve.chat + the ct2 engine's stream, int8, up to {n} new tokens, "
            f"{len(manifest['messages'])} messages)\n")
        out("| time to first token, median / max | tokens/s while streaming | "
            "tokens/s incl. first token | peak RSS |\n|---|---|---|---|")
        out(f"| {chat['ttft_median'] * 1000:.0f} / {chat['ttft_max'] * 1000:.0f} ms | "
            f"{chat['stream_rate']:,.1f} | {chat['overall_rate']:,.1f} | "
            f"{chat['peak'] / 2**20:,.0f} MiB |")

    if finetune:
        lora = manifest["ft_lora"]
        out(f"\n### LoRA finetuning: rank {lora['rank']}, alpha {lora['alpha']}, dropout "
            f"{lora['dropout']} on {', '.join(lora['layers'])} (configs/llama7b-vicuna.yaml), "
            f"fp32 weights, Adam; {args.ft_sequences} x {args.ft_seq_length} tokens a step, "
            f"{args.ft_steps} steps after {args.ft_warmup}\n")
        out("| engine | tokens/s | loss, step by step | peak RSS |\n|---|---|---|---|")
        for label, r in finetune.items():
            losses = "" if r is None else " ".join(f"{x:.3f}" for x in r.get("losses", []))
            out(f"| {label} | " + ("failed | | |" if r is None else
                                   f"{r['rate']:,.1f} | {losses} | {r['peak'] / 2**20:,.0f} MiB |"))

    big = args.batches[-1]
    ours_ft = finetune.get("the workflow's (OpenNMT-py, 8-bit FFN)")
    peft = finetune.get("transformers + peft")
    share = None
    if probe and (decode := rate(results, OURS, 1, "decode_rates")):
        share = decode / limit(manifest, probe["bandwidth"], engines[OURS].bytes_per_weight, 1)
    rows = [
        (f"{OURS} / {REFERENCE}, batch 1", rate(results, OURS, 1), rate(results, REFERENCE, 1), 3.0),
        (f"{OURS} / llama.cpp Q8_0, batch 1", rate(results, OURS, 1),
         rate(results, "llama.cpp Q8_0", 1), 1.0),
        (f"{OURS}, batch 1 decode: share of its bandwidth limit", share, 1.0 if share else None, 0.6),
        (f"{OURS} / {REFERENCE}, batch {big}", rate(results, OURS, big),
         rate(results, REFERENCE, big), 3.0),
        ("the workflow's finetuning / peft", ours_ft and ours_ft["rate"], peft and peft["rate"], 1.2),
    ]
    # the gguf mode (issue #30): through the project's engine as fast as llama.cpp run directly on
    # the same file; the 4-bit file small and fast beside Q8_0 and the ct2 int8 release
    sizes = manifest.get("sizes", {})
    for kind in ("Q8_0", "Q4_K_M"):
        for b in (1, big):
            rows.append((f"gguf {kind} / llama.cpp {kind}, batch {b}", rate(results, f"gguf {kind}", b),
                         rate(results, f"llama.cpp {kind}", b), 0.9))
    rows += [
        ("size: the Q4_K_M file / the ct2 int8 release", sizes.get("gguf_q4_k_m"),
         sizes.get("ct2_int8"), -0.6),  # negative: at most
        ("gguf Q4_K_M / gguf Q8_0, batch 1", rate(results, "gguf Q4_K_M", 1),
         rate(results, "gguf Q8_0", 1), 1.5),
        (f"gguf Q8_0 / {OURS}, batch 1 (a goal where the CPU has no AVX-512)",
         rate(results, "gguf Q8_0", 1), rate(results, OURS, 1), 2.0),
    ]
    out("\n### Goals\n\n| ratio | measured | goal | |\n|---|---|---|---|")
    for label, a, b, goal in rows:
        sign, bound = (">=", goal) if goal > 0 else ("<=", -goal)
        if a is None or b is None:
            out(f"| {label} | n/a | {sign} {bound:.0%} | n/a |" if "share" in label else
                f"| {label} | n/a | {sign} {bound:g}x | n/a |")
            continue
        shown, wanted = ((f"{a / b:.0%}", f"{bound:.0%}") if "share" in label
                         else (f"{a / b:.2f}x", f"{bound:g}x"))
        met = a / b >= bound if goal > 0 else a / b <= bound
        out(f"| {label} | {shown} | {sign} {wanted} | {'met' if met else '**missed**'} |")
