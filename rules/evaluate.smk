# What the finetuning did: evaluation of base vs finetuned, and the training curves.


# `evaluate` loads a model only for the base's answers to referenced prompts; without
# references it compares the two modes' predictions and needs neither memory nor GPU.
EVAL_LOADS_MODELS = bool(REFERENCES)


# outputs/heldout_loss.json: held-out loss and perplexity per corpus, base and finetuned, one
# model at a time. Its own job, so that a change of the decoding options does not rerun it; not
# planned at all without a held-out corpus.
rule heldout_loss:
    input:
        base=rules.convert_llama.output.checkpoint,
        finetuned=rules.merge_lora.output.checkpoint,
        tokenizer=config["base"]["tokenizer_model"],
        heldout=[corpus_path(source) for source in EVAL_CORPORA.values()],
        provenance=[corpus_provenance(source) for source in EVAL_CORPORA.values()],
    output:
        json=run_path("outputs/heldout_loss.json"),
    params:
        heldout=" ".join(f"--heldout {name} {corpus_path(source)}"
                         for name, source in EVAL_CORPORA.items()),
        device=config["inference"]["device"],
        precision=config["inference"]["precision"],
        answers="--answer_loss_only" if config["train"]["answer_loss_only"] else "",
    resources:
        mem_mb=mem_mb("heldout_loss", "finetuned"),
        gpu=gpus(config["inference"]["device"]),
    log:
        run_path("logs/heldout_loss.log"),
    benchmark:
        run_path("benchmarks/heldout_loss.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "heldout_loss.py --base {input.base} --finetuned {input.finetuned}"
        " --tokenizer_model {input.tokenizer} {params.heldout}"
        " --device {params.device} --precision {params.precision} {params.answers}"
        " --json {output.json} > {log} 2>&1"



# outputs/eval.json and outputs/eval.tsv: exact match, the modes' agreement, the held-out losses, and
# the benchmarks' accuracies (MMLU's ACC-all per method).
rule evaluate:
    input:
        base=rules.convert_llama.output.checkpoint,
        heldout_loss=heldout_loss_json,
        mmlu=mmlu_json,
        prompts=INPUT_EXAMPLES,
        references=REFERENCES,
        # every mode's, py's first (the finetuned model's answers): agreement of each pair
        predictions=expand(rules.simple_inference.output.predictions, mode=MODES),
        # the base's answers are generated with the py mode's options
        options=expand(rules.translate_opts.output.options, mode="py"),
    output:
        json=run_path("outputs/eval.json"),
        table=run_path("outputs/eval.tsv"),
        html=report(run_path("outputs/eval.html"), category="Evaluation"),
    params:
        heldout_loss=lambda w, input: " ".join(f"--heldout_loss {p}" for p in input.heldout_loss),
        mmlu=lambda w, input: " ".join(f"--mmlu {p}" for p in input.mmlu),
        references=lambda w, input: f"--references {input.references}" if input.references else "",
        predictions=lambda w, input: " ".join(
            f"--predictions_{mode} {path}" for mode, path in zip(MODES, input.predictions)
        ),
    resources:
        # the base's answers: the py engine on the base, sized as py inference
        mem_mb=mem_mb("simple_inference_py", "base") if EVAL_LOADS_MODELS else 1000,
        gpu=gpus(config["inference"]["device"]) if EVAL_LOADS_MODELS else 0,
    log:
        run_path("logs/evaluate.log"),
    benchmark:
        run_path("benchmarks/evaluate.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "evaluate.py --base {input.base} {params.heldout_loss} {params.mmlu} --prompts {input.prompts}"
        " {params.references} {params.predictions} --translate_opts_py {input.options}"
        " --json {output.json} --table {output.table} --html {output.html} > {log} 2>&1"


# finetuned_<model>/training_curves.png from the TensorBoard event files the training lists.
rule training_curves:
    input:
        history=rules.finetune.output.tensorboard,
    output:
        curves=report(f"{FINETUNED}/training_curves.png", category="Training"),
    log:
        run_path("logs/training_curves.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "training_curves.py --history {input.history} --output {output.curves} > {log} 2>&1"
