#!/usr/bin/env python
"""Child of peers.py: everything a run needs, in its work folder: the model in every engine's
format (models.build; GGUF F32, Q8_0 and Q4_K_M by the workflow's own release, release_model.py
--format gguf, as rule release_gguf writes them), the prompts and chat messages, and the
finetuning sequences and config (finetune_ours.py).

    python benchmarks/peers_prepare.py SPEC.json MANIFEST.json
"""

from __future__ import annotations

from pathlib import Path

import common
import finetune_ours
import models

GGUF_TYPES = ("f32", "q8_0", "q4_k_m")


def run(spec: dict) -> dict:
    work = Path(spec["work"])
    manifest = models.build(work, spec["dim"], spec["layers"], heads=spec.get("heads"))
    manifest["sizes"] = {key: models.size_bytes(manifest[key])
                         for key in ("hf", "onmt", "ct2_float32", "ct2_int8")}
    if spec["llamacpp"]:
        for kind in GGUF_TYPES:  # the workflow's own GGUF release of the converted model
            path = work / f"model-{kind}.gguf"
            common.script("release_model.py", "--model", manifest["onmt"], "--output", str(path),
                          "--format", "gguf", "--gguf_type", kind, "--tokenizer_model",
                          manifest["tokenizer"], "--force")
            manifest[f"gguf_{kind}"] = str(path)
            manifest["sizes"][f"gguf_{kind}"] = models.size_bytes(path)
    manifest["prompts"] = common.prompts(spec["prompts"])
    manifest["messages"] = common.messages(spec["prompts"])
    if spec["finetune"]:
        ft = spec["finetune"]
        data = work / "ft.txt"
        finetune_ours.write_data(data, manifest["tokenizer"], ft["lines"], ft["seq_length"])
        train = finetune_ours.benchmark_train(ft["seq_length"], ft["sequences"],
                                              ft["warmup"] + ft["steps"], ft["learning_rate"])
        manifest["ft_data"] = str(data)
        manifest["ft_lora"] = train["lora"]
        manifest["ft_config"] = str(finetune_ours.write_config(work, manifest, data, train))
        # the same without 8-bit feed-forward layers: what bitsandbytes costs on a CPU
        train_fp32 = {**train, "quantization": {"layers": [], "type": ""}}
        (work / "fp32").mkdir(exist_ok=True)
        manifest["ft_config_fp32"] = str(finetune_ours.write_config(work / "fp32", manifest, data,
                                                                    train_fp32))
    return manifest


if __name__ == "__main__":
    common.child_main(run)
