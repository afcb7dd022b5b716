# The foundation model as an OpenNMT-py checkpoint, and its vocabulary.


# Meta's params.json + consolidated.*.pth (or a Hugging Face directory) + tokenizer.model
# -> <model>-vicuna-onmt.pt
rule convert_llama:
    input:
        model=base_model_files(),
        tokenizer=config["base"]["tokenizer_model"],
    output:
        checkpoint=BASE_CHECKPOINT,
    params:
        model_dir=lambda w, input: Path(input.model[0]).parent,
    resources:
        mem_mb=mem_mb("convert_llama"),
        runtime=runtime_min(),
        disk_mb=disk_mb(),
    log:
        run_path("logs/convert_llama.log"),
    benchmark:
        run_path("benchmarks/convert_llama.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "convert_llama.py --model_dir {params.model_dir}"
        " --tokenizer_model {input.tokenizer} --output {output.checkpoint} --force > {log} 2>&1"


# The converted checkpoint's vocabulary, one token a line (pad <blank> at id 3).
rule extract_vocabulary:
    input:
        checkpoint=rules.convert_llama.output.checkpoint,
    output:
        vocab=run_path("vocab.txt"),
    resources:
        mem_mb=mem_mb("extract_vocabulary", "checkpoint"),
        runtime=runtime_min("checkpoint"),
    log:
        run_path("logs/extract_vocabulary.log"),
    benchmark:
        run_path("benchmarks/extract_vocabulary.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "extract_vocabulary.py -model {input.checkpoint}"
        " -out_file {output.vocab} -side src > {log} 2>&1"
