# What the finetuning did: evaluation of base vs finetuned, and the training curves.


# The validation corpus and the held-out corpora, each scored for base and finetuned.
EVAL_CORPORA = ({"valid": "valid"} if VALID else {}) | dict(sorted(HELDOUT.items()))
# Models are loaded only for held-out losses and for the base's answers to referenced prompts;
# without either, `evaluate` compares the two modes' predictions and needs neither memory nor GPU.
EVAL_LOADS_MODELS = bool(EVAL_CORPORA) or "references" in config["inference"]


# outputs/eval.json and outputs/eval.tsv: held-out loss per corpus, exact match, py/ct2 agreement.
rule evaluate:
    input:
        base=rules.convert_llama.output.checkpoint,
        finetuned=rules.merge_lora.output.checkpoint,
        tokenizer=config["base"]["tokenizer_model"],
        heldout=[corpus_path(source) for source in EVAL_CORPORA.values()],
        prompts=config["inference"]["input_examples"],
        references=config["inference"].get("references", []),
        predictions=expand(rules.simple_inference.output.predictions, mode=MODES),
        options="translate_opts_py.yaml",
    output:
        json="outputs/eval.json",
        table="outputs/eval.tsv",
        html=report("outputs/eval.html", category="Evaluation"),
    params:
        heldout=" ".join(f"--heldout {name} {corpus_path(source)}"
                         for name, source in EVAL_CORPORA.items()),
        references=lambda w, input: f"--references {input.references}" if input.references else "",
        device=config["inference"]["device"],
        precision=config["inference"]["precision"],
    resources:
        mem_mb=mem_mb("evaluate", "finetuned") if EVAL_LOADS_MODELS else 1000,
        gpu=gpus(config["inference"]["device"]) if EVAL_LOADS_MODELS else 0,
    log:
        "logs/evaluate.log",
    benchmark:
        "benchmarks/results/evaluate.tsv"
    conda:
        "../envs/vicuna.yaml"
    shell:
        "evaluate.py --base {input.base} --finetuned {input.finetuned}"
        " --tokenizer_model {input.tokenizer} {params.heldout} --prompts {input.prompts}"
        " {params.references} --predictions_py {input.predictions[0]}"
        " --predictions_ct2 {input.predictions[1]} --translate_opts_py {input.options}"
        " --device {params.device} --precision {params.precision}"
        " --json {output.json} --table {output.table} --html {output.html} > {log} 2>&1"


# finetuned_<model>/training_curves.png from the TensorBoard event files.
rule training_curves:
    input:
        logs=rules.finetune.output.tensorboard,
    output:
        curves=report(f"{FINETUNED}/training_curves.png", category="Training"),
    log:
        "logs/training_curves.log",
    conda:
        "../envs/vicuna.yaml"
    shell:
        "training_curves.py --log_dir {input.logs} --output {output.curves} > {log} 2>&1"
