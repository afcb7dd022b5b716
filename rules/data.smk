# Finetuning data: dataAI/<corpus>.txt, one example a line, "\n" written as ｟newline｠.


# Raw alpaca / ShareGPT JSON -> OpenNMT-py text (corpora with `json:` in config.yaml).
rule flatten_dataset:
    input:
        lambda w: SOURCES[w.corpus]["json"],
    output:
        text="dataAI/{corpus}.txt",
        report="dataAI/{corpus}.flatten.json",
    wildcard_constraints:
        corpus=one_of(JSON_SOURCES),
    params:
        format=lambda w: SOURCES[w.corpus]["format"],
        on_error=config["data"]["on_error"],
    log:
        "logs/flatten_dataset/{corpus}.log",
    conda:
        "../envs/vicuna.yaml"
    shell:
        "flatten_dataset.py --format {params.format}"
        " --on_error {params.on_error} --report {output.report}"
        " {input} {output.text} > {log} 2>&1"


# A flattened corpus from a URL or a local path, resumable, checked (corpora with `url:`).
rule download_dataset:
    output:
        text="dataAI/{corpus}.txt",
        manifest="dataAI/{corpus}.manifest.json",
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
        "logs/download_dataset/{corpus}.log",
    conda:
        "../envs/vicuna.yaml"
    shell:
        "download.py --url {params.url:q} --output {output.text} --corpus"
        " {params.checks} --manifest {output.manifest} > {log} 2>&1"


# dataAI/stats.tsv and a histogram: kept / skipped examples, token lengths, share too long.
rule data_report:
    input:
        corpora=[corpus_path(name) for name in SOURCES],
        reports=[f"dataAI/{name}.flatten.json" for name in JSON_SOURCES],
        tokenizer=config["base"]["tokenizer_model"],
    output:
        stats=report("dataAI/stats.tsv", category="Data"),
        histogram=report("dataAI/token_lengths.png", category="Data"),
    params:
        corpora=" ".join(f"--corpus {name} {corpus_path(name)}" for name in SOURCES),
        seq_length=config["train"]["seq_length"],
    log:
        "logs/data_report.log",
    conda:
        "../envs/vicuna.yaml"
    shell:
        "data_report.py {params.corpora} --reports {input.reports}"
        " --tokenizer_model {input.tokenizer} --seq_length {params.seq_length}"
        " --stats {output.stats} --histogram {output.histogram} > {log} 2>&1"
