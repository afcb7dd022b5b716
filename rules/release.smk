# Merge the LoRA weights into the base, then release it: to CTranslate2, to Hugging Face's
# layout (the merged model, and the LoRA as a PEFT adapter on the base in that layout), and to
# GGUF for llama.cpp and Ollama (with a Modelfile).


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
        run_path("logs/merge_lora.log"),
    benchmark:
        run_path("benchmarks/merge_lora.tsv")
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
        run_path("logs/release_ct2.log"),
    benchmark:
        run_path("benchmarks/release_ct2.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "release_model.py --model {input.checkpoint} --output {output.model}"
        " --format ctranslate2 --quantization {params.quantization} > {log} 2>&1"


HF_RELEASE = config["release"]["huggingface"]


# finetuned_<model>/<model>-vicuna-onmt_step_N.concat_HF: the merged model as a Hugging Face
# LlamaForCausalLM directory (transformers, vLLM), float16 by default
rule release_hf:
    input:
        checkpoint=rules.merge_lora.output.checkpoint,
        tokenizer=config["base"]["tokenizer_model"],
    output:
        model=directory(f"{STEP_CHECKPOINT}.concat_HF"),
    params:
        dtype=HF_RELEASE["dtype"],
        max_shard_mb=HF_RELEASE["max_shard_mb"],
    resources:
        mem_mb=mem_mb("release_hf", "checkpoint"),
        runtime=runtime_min("checkpoint"),
        disk_mb=hf_disk_mb("checkpoint", HF_RELEASE["dtype"]),
    log:
        run_path("logs/release_hf.log"),
    benchmark:
        run_path("benchmarks/release_hf.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "release_model.py --model {input.checkpoint} --output {output.model} --format huggingface"
        " --tokenizer_model {input.tokenizer} --dtype {params.dtype}"
        " --max_shard_mb {params.max_shard_mb} --force > {log} 2>&1"


# The adapter's base: the Meta-layout base exported as the merged model is (rule
# release_hf_base, defined only then: a Hugging Face base is its own, and no rule may claim its
# directory), or the Hugging Face base's own files (config.json first).
if planned_layout(config["base"]["model_dir"]) == "meta":

    # <model>_HF: the base in Hugging Face's layout, for the PEFT adapter to load on: the
    # merged model's release, run on the converted base
    use rule release_hf as release_hf_base with:
        input:
            checkpoint=rules.convert_llama.output.checkpoint,
            tokenizer=config["base"]["tokenizer_model"],
        output:
            model=directory(run_path(f"{MODEL}_HF")),
        resources:
            mem_mb=mem_mb("release_hf_base", "checkpoint"),
            runtime=runtime_min("checkpoint"),
            disk_mb=hf_disk_mb("checkpoint", HF_RELEASE["dtype"]),
        log:
            run_path("logs/release_hf_base.log"),
        benchmark:
            run_path("benchmarks/release_hf_base.tsv")

    PEFT_BASE = [rules.release_hf_base.output.model]
else:
    PEFT_BASE = base_model_files()


# finetuned_<model>/<model>-vicuna-onmt_step_N_PEFT: the LoRA step checkpoint as a PEFT adapter
# of the base in Hugging Face's layout
rule release_peft:
    input:
        lora=rules.finetune.output.checkpoint,
        base=PEFT_BASE,
    output:
        adapter=directory(f"{STEP_CHECKPOINT}_PEFT"),
    params:
        base_dir=lambda w, input: peft_base_dir(input.base),
        # portable: a name the config gives (a Hub id), else the base's path from the run's folder;
        # a value, not a function of the input: Snakemake reruns a job for a changed value only
        base_name=config["release"].get("peft_base_model")
        or os.path.relpath(peft_base_dir(PEFT_BASE), RUN),
    resources:
        mem_mb=mem_mb("release_peft", "lora"),
        runtime=runtime_min("lora"),
        disk_mb=disk_mb("lora"),
    log:
        run_path("logs/release_peft.log"),
    benchmark:
        run_path("benchmarks/release_peft.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "release_model.py --model {input.lora} --output {output.adapter} --format peft"
        " --base_model {params.base_dir} --base_name {params.base_name:q} --force > {log} 2>&1"


GGUF_TYPES = config["release"]["gguf"]  # the schema's default: [f16, q8_0, q4_k_m]


# finetuned_<model>/<model>-vicuna-onmt_step_N.concat-<type>.gguf: the merged model as one GGUF
# file for llama.cpp and Ollama, one job per type of release.gguf (q4_k_m: llama.cpp's quantizer)
rule release_gguf:
    input:
        checkpoint=rules.merge_lora.output.checkpoint,
        tokenizer=config["base"]["tokenizer_model"],
    output:
        model=f"{STEP_CHECKPOINT}.concat-{{gguf_type}}.gguf",
    wildcard_constraints:
        gguf_type=one_of(["f32", "f16", "q8_0", "q4_k_m"]),
    resources:
        # the largest of the types' measured fits (benchmarks/job_memory.py)
        mem_mb=mem_mb("release_gguf", "checkpoint"),
        runtime=runtime_min("checkpoint"),
        disk_mb=disk_mb("checkpoint"),
    log:
        run_path("logs/release_gguf_{gguf_type}.log"),
    benchmark:
        run_path("benchmarks/release_gguf_{gguf_type}.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "release_model.py --model {input.checkpoint} --output {output.model} --format gguf"
        " --gguf_type {wildcards.gguf_type} --tokenizer_model {input.tokenizer}"
        " --threads {threads} --force > {log} 2>&1"


# finetuned_<model>/<model>-vicuna-onmt_step_N.concat.Modelfile: Ollama's recipe for the GGUF
# beside it (`ollama create NAME -f ...Modelfile`), with the options file's decoding defaults
rule release_modelfile:
    input:
        gguf=modelfile_gguf,
        # rule translate_opts is defined later (rules/inference.smk): looked up when planned
        options=lambda w: expand(rules.translate_opts.output.options, mode=MODES[0]),
    output:
        modelfile=f"{STEP_CHECKPOINT}.concat.Modelfile",
    log:
        run_path("logs/release_modelfile.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "write_modelfile.py --gguf {input.gguf} --options {input.options}"
        " --output {output.modelfile} --force > {log} 2>&1"
