# Finetuning data: dataAI/<corpus>.txt, one example a line, "\n" written as ｟newline｠.


# Raw alpaca / ShareGPT JSON -> OpenNMT-py text (corpora with `json:` in config.yaml).
rule flatten_dataset:
    input:
        lambda w: SOURCES[w.corpus]["json"],
    output:
        text=run_path("dataAI/{corpus}.txt"),
        report=run_path("dataAI/{corpus}.flatten.json"),
    wildcard_constraints:
        corpus=one_of(JSON_SOURCES),
    params:
        format=lambda w: SOURCES[w.corpus]["format"],
        on_error=config["data"]["on_error"],
    log:
        run_path("logs/flatten_dataset/{corpus}.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "flatten_dataset.py --format {params.format}"
        " --on_error {params.on_error} --report {output.report}"
        " {input} {output.text} > {log} 2>&1"


# A flattened corpus from a URL or a local path, resumable, checked (corpora with `url:`).
rule download_dataset:
    output:
        text=run_path("dataAI/{corpus}.txt"),
        manifest=run_path("dataAI/{corpus}.manifest.json"),
    wildcard_constraints:
        corpus=one_of(URL_SOURCES),
    params:
        url=lambda w: SOURCES[w.corpus]["url"],
        checks=lambda w: " ".join(
            f"--{key} {SOURCES[w.corpus][key]}"
            for key in ("sha256", "size")
            if key in SOURCES[w.corpus]
        ),
    log:
        run_path("logs/download_dataset/{corpus}.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "download.py --url {params.url:q} --output {output.text} --corpus"
        " {params.checks} --manifest {output.manifest} > {log} 2>&1"


# Examples over train.seq_length cut into windows of whole rounds that fit (data.split_long):
# what the training reads instead of dataAI/<corpus>.txt. Validation and held-out corpora are
# scored whole, as without it.
rule split_long:
    input:
        text=corpus_path("{corpus}"),
        tokenizer=config["base"]["tokenizer_model"],
    output:
        text=run_path("dataAI/{corpus}.split.txt"),
        report=run_path("dataAI/{corpus}.split.json"),
    wildcard_constraints:
        corpus=one_of(config["data"]["corpora"]),
    params:
        seq_length=config["train"]["seq_length"],
        answer_marks="--answer_loss_only" if config["train"]["answer_loss_only"] else "",
    log:
        run_path("logs/split_long/{corpus}.log"),
    benchmark:
        run_path("benchmarks/split_long/{corpus}.tsv")
    conda:
        "../envs/vicuna.yaml"
    shell:
        "split_long.py --tokenizer_model {input.tokenizer} --seq_length {params.seq_length}"
        " {params.answer_marks} --report {output.report} {input.text} {output.text} > {log} 2>&1"


# The training corpora split by split_long, by name (none without data.split_long).
SPLITS = {
    name: (training_corpus(name), rules.split_long.output.report.format(corpus=name))
    for name in (config["data"]["corpora"] if SPLIT_LONG else [])
}


# dataAI/stats.tsv and a histogram: records skipped and repaired, token lengths, and what of
# each training corpus is kept, split and dropped, and why.
rule data_report:
    input:
        corpora=[corpus_path(name) for name in SOURCES],
        reports=[rules.flatten_dataset.output.report.format(corpus=name) for name in JSON_SOURCES],
        manifests=[corpus_provenance(name) for name in URL_SOURCES],
        splits=[path for pair in SPLITS.values() for path in pair],
        tokenizer=config["base"]["tokenizer_model"],
    output:
        stats=report(run_path("dataAI/stats.tsv"), category="Data"),
        histogram=report(run_path("dataAI/token_lengths.png"), category="Data"),
    params:
        corpora=" ".join(f"--corpus {name} {corpus_path(name)}" for name in SOURCES),
        training=" ".join(config["data"]["corpora"]),
        splits=" ".join(f"--split {name} {text} {report}" for name, (text, report) in SPLITS.items()),
        seq_length=config["train"]["seq_length"],
        answer_marks="--answer_loss_only" if config["train"]["answer_loss_only"] else "",
    log:
        run_path("logs/data_report.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "data_report.py {params.corpora} --reports {input.reports} --training {params.training}"
        " {params.splits} --tokenizer_model {input.tokenizer} --seq_length {params.seq_length}"
        " {params.answer_marks} --stats {output.stats} --histogram {output.histogram} > {log} 2>&1"
