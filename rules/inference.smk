# Batch inference in both modes: py (OpenNMT-py) and ct2 (CTranslate2).
from vicuna import engines


MODE_MODEL = {"py": rules.merge_lora.output.checkpoint, "ct2": rules.release_ct2.output.model}


# translate_opts_py.yaml / translate_opts_ct2.yaml from config.yaml's `inference` section: each
# mode's job gets only the keys it reads (engines.config_keys), so a ct2-only key reruns only ct2.
rule translate_opts:
    input:
        model=lambda w: MODE_MODEL[w.mode],
        tokenizer=config["base"]["tokenizer_model"],
    output:
        options="translate_opts_{mode}.yaml",
    wildcard_constraints:
        mode=one_of(MODES),
    params:
        inference=lambda w: as_json(
            {key: config["inference"][key] for key in engines.config_keys(w.mode)}
        ),
    log:
        "logs/translate_opts_{mode}.log",
    conda:
        "../envs/vicuna.yaml"
    shell:
        "write_translate_opts.py --mode {wildcards.mode} --model {input.model}"
        " --tokenizer_model {input.tokenizer} --inference_json {params.inference:q}"
        " --output {output.options} > {log} 2>&1"


# outputs/predictions_<mode>.txt: one answer a line, newlines as ｟newline｠.
rule simple_inference:
    input:
        examples=config["inference"]["input_examples"],
        options=rules.translate_opts.output.options,
        model=lambda w: MODE_MODEL[w.mode],
        tokenizer=config["base"]["tokenizer_model"],
    output:
        predictions=report("outputs/predictions_{mode}.txt", category="Predictions"),
        scores="outputs/predictions_{mode}.json",
    wildcard_constraints:
        mode=one_of(MODES),
    resources:
        mem_mb=mem_mb("simple_inference_{mode}"),
        gpu=gpus(config["inference"]["device"]),
    log:
        "logs/simple_inference_{mode}.log",
    benchmark:
        "benchmarks/results/simple_inference_{mode}.tsv"
    conda:
        "../envs/vicuna.yaml"
    shell:
        "simple_inference.py -input_file {input.examples}"
        " -inference_config_file {input.options} -inference_mode {wildcards.mode}"
        " -output_dir outputs > {log} 2>&1"
