# Merge the LoRA weights into the base, then release to CTranslate2.


# finetuned_<model>/<model>-vicuna-onmt_step_N.concat.pt
rule merge_lora:
    input:
        base=rules.convert_llama.output.checkpoint,
        lora=rules.finetune.output.checkpoint,
    output:
        checkpoint=f"{STEP_CHECKPOINT}.concat.pt",
    resources:
        mem_mb=mem_mb("merge_lora", "base"),
        runtime=runtime_min("base"),
        disk_mb=disk_mb("base"),
    log:
        "logs/merge_lora.log",
    benchmark:
        "benchmarks/results/merge_lora.tsv"
    conda:
        "../envs/vicuna.yaml"
    shell:
        "lora_weights.py --action merge --base_model {input.base}"
        " --lora_weights {input.lora} --output {output.checkpoint} > {log} 2>&1"


# finetuned_<model>/<model>-vicuna-onmt_step_N.concat_CT2 (int8_float16 by default)
rule release_ct2:
    input:
        checkpoint=rules.merge_lora.output.checkpoint,
    output:
        model=directory(f"{STEP_CHECKPOINT}.concat_CT2"),
    params:
        quantization=config["release"]["quantization"],
    resources:
        mem_mb=mem_mb("release_ct2", "checkpoint"),
        runtime=runtime_min("checkpoint"),
        disk_mb=disk_mb("checkpoint"),
    log:
        "logs/release_ct2.log",
    benchmark:
        "benchmarks/results/release_ct2.tsv"
    conda:
        "../envs/vicuna.yaml"
    shell:
        "release_model.py --model {input.checkpoint} --output {output.model}"
        " --format ctranslate2 --quantization {params.quantization} > {log} 2>&1"
