# LoRA finetuning with onmt_train: LoRA on attention, 8-bit feed-forward, RMSNorm, rotary, SwiGLU.

# OpenNMT-py's TensorBoard logs. Their event files are no output of `finetune`: Snakemake deletes
# a failed job's outputs, and a directory() output before each run, which would take a killed
# training's curves with it; a resumed run continues them instead (vicuna/train/resume.py).
TENSORBOARD = f"{FINETUNED}/logs"


# The tutorial's replicate_vicuna.yaml, written from config.yaml's `train` section.
rule finetune_config:
    input:
        model=rules.convert_llama.input.model,
        vocab=rules.extract_vocabulary.output.vocab,
        checkpoint=rules.convert_llama.output.checkpoint,
        tokenizer=config["base"]["tokenizer_model"],
        corpora=[training_corpus(name) for name in config["data"]["corpora"]],
        valid=[corpus_path("valid")] if VALID else [],
        provenance=[corpus_provenance(name) for name in [*config["data"]["corpora"], *(["valid"] if VALID else [])]],
    output:
        config=report(run_path("replicate_vicuna.yaml"), category="Configuration"),
    params:
        corpora=" ".join(
            f"--corpus {name}={training_corpus(name)}:{spec['weight']}"
            for name, spec in config["data"]["corpora"].items()
        ),
        train=as_json(config["train"]),
        valid=f"--valid {corpus_path('valid')}" if VALID else "",
        model_dir=lambda w, input: Path(input.model[0]).parent,
    log:
        run_path("logs/finetune_config.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "write_finetune_config.py --model_dir {params.model_dir}"
        " --vocab {input.vocab} --base_checkpoint {input.checkpoint}"
        " --tokenizer_model {input.tokenizer} {params.corpora} {params.valid}"
        f" --save_model {SAVE_MODEL} --tensorboard_dir {TENSORBOARD}"
        " --train_json {params.train:q} --output {output.config} > {log} 2>&1"


# Every file the finetuning config names, but the base checkpoint (read by `finetune` only).
FINETUNE_DATA = [
    *rules.finetune_config.input.corpora,
    *rules.finetune_config.input.valid,
    rules.finetune_config.input.vocab,
    rules.finetune_config.input.tokenizer,
]


# The first examples of each corpus as the model sees them (tokens, after the transforms).
rule finetune_samples:
    input:
        config=rules.finetune_config.output.config,
        # what the config names: a change of content anywhere reruns the step
        data=FINETUNE_DATA,
    output:
        samples=directory(f"{FINETUNED}/samples"),
    params:
        n=config["data"]["n_samples"],
    log:
        run_path("logs/finetune_samples.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "train.py -config {input.config} -n_sample {params.n}"
        " -save_data {output.samples}/sample > {log} 2>&1"


# onmt_train: LoRA step checkpoints, validation, TensorBoard logs (and, once finished, the list of
# their event files: the output that the curves read).
rule finetune:
    input:
        config=rules.finetune_config.output.config,
        # what the config names: a change of content anywhere retrains
        data=FINETUNE_DATA,
        base=rules.finetune_config.input.checkpoint,
    output:
        checkpoint=f"{STEP_CHECKPOINT}.pt",
        tensorboard=f"{TENSORBOARD}/history.json",
    resources:
        mem_mb=mem_mb("finetune", "base"),
        gpu=1,  # the training rule runs on a GPU node (on the tiny default it trains on its CPUs)
    log:
        run_path("logs/finetune.log"),
    benchmark:
        run_path("benchmarks/finetune.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        # the console (3>&2) gets the step it starts or resumes from; the log everything
        "train.py -config {input.config} -tensorboard_history {output.tensorboard}"
        " -console_fd 3 3>&2 > {log} 2>&1"
