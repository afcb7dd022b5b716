# Batch inference in every mode: py (OpenNMT-py), ct2 (CTranslate2) and gguf (llama.cpp).
from vicuna.serve import engines


if PROMPT_RECORDS:

    # <run>/inputs/input_examples.txt (and references.txt) from alpaca records: the prompts laid
    # out in the template up to "### Response:", their outputs as references.
    rule inference_prompts:
        input:
            records=config["inference"]["input_examples"],
        output:
            prompts=INPUT_EXAMPLES,
            **({"references": REFERENCES[0]} if RECORD_REFERENCES else {}),
        params:
            references=f"--references {REFERENCES[0]}" if RECORD_REFERENCES else "",
        log:
            run_path("logs/inference_prompts.log"),
        conda:
            "../envs/vicuna.yaml"
        shell:
            "layout_prompts.py --records {input.records} --prompts {output.prompts}"
            " {params.references} > {log} 2>&1"


# The model each mode reads: the merged checkpoint, the CTranslate2 release, and the GGUF
# release of inference.gguf_type (one of release.gguf: vicuna.config_check says so at parse time).
MODE_MODEL = {
    "py": rules.merge_lora.output.checkpoint,
    "ct2": rules.release_ct2.output.model,
    "gguf": expand(rules.release_gguf.output.model, gguf_type=config["inference"]["gguf_type"])[0],
}


# translate_opts_<mode>.yaml from config.yaml's `inference` section: each mode's job gets only
# the keys it reads (engines.config_keys), so a ct2-only key reruns only ct2.
rule translate_opts:
    input:
        model=lambda w: MODE_MODEL[w.mode],
        tokenizer=config["base"]["tokenizer_model"],
    output:
        options=run_path("translate_opts_{mode}.yaml"),
    wildcard_constraints:
        mode=one_of(MODES),
    params:
        inference=lambda w: as_json(
            {key: config["inference"][key] for key in engines.config_keys(w.mode)}
        ),
    log:
        run_path("logs/translate_opts_{mode}.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "write_translate_opts.py --mode {wildcards.mode} --model {input.model}"
        " --tokenizer_model {input.tokenizer} --inference_json {params.inference:q}"
        " --output {output.options} > {log} 2>&1"


# outputs/predictions_<mode>.txt: one answer a line as generated, newlines as ｟newline｠;
# outputs/answers_<mode>.txt: the same, as shown.
rule simple_inference:
    input:
        examples=INPUT_EXAMPLES,
        options=rules.translate_opts.output.options,
        model=lambda w: MODE_MODEL[w.mode],
        tokenizer=config["base"]["tokenizer_model"],
    output:
        predictions=run_path("outputs/predictions_{mode}.txt"),
        # the answers as the chatbot shows them: up to a next round the model opened itself
        answers=report(run_path("outputs/answers_{mode}.txt"), category="Predictions"),
        scores=run_path("outputs/predictions_{mode}.json"),
    wildcard_constraints:
        mode=one_of(MODES),
    params:
        output_dir=lambda w, output: Path(output.predictions).parent,
    resources:
        mem_mb=mem_mb("simple_inference_{mode}"),
        gpu=mode_gpus,
    log:
        run_path("logs/simple_inference_{mode}.log"),
    benchmark:
        run_path("benchmarks/simple_inference_{mode}.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "simple_inference.py -input_file {input.examples}"
        " -inference_config_file {input.options} -inference_mode {wildcards.mode}"
        " -output_dir {params.output_dir} > {log} 2>&1"
