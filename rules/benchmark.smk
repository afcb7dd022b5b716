# Benchmarks of the base and the finetuned model: MMLU (config `benchmarks.mmlu`), as OpenNMT-py's
# eval_llm/MMLU measures it and as lm-eval does (vicuna/evaluation/mmlu.py). Not planned without the section.

# An archive (a URL, or a path of a .tar/.tar.gz) is fetched as corpora are; a directory is read.
MMLU_ARCHIVE = bool(MMLU) and (
    "://" in MMLU["data"] or MMLU["data"].endswith((".tar", ".tar.gz", ".tgz"))
)
# Minutes per GB of checkpoint: an estimate for 57 subjects, 14,042 questions, both methods
# and both models (scoring_runtime_min in rules/resources.smk).
MMLU_MINUTES_PER_GB = 40


if MMLU_ARCHIVE:

    # dataAI/mmlu_data.tar: Hendrycks' data.tar (or any .tar/.tar.gz holding dev/ and test/),
    # resumable, checked against `sha256` or, without it, against its first download's manifest.
    rule mmlu_download:
        output:
            archive=run_path("dataAI/mmlu_data.tar"),
            manifest=run_path("dataAI/mmlu_data.manifest.json"),
        params:
            url=MMLU["data"],
            checks=f"--sha256 {MMLU['sha256']}" if "sha256" in MMLU else "",
        log:
            run_path("logs/mmlu_download.log"),
        conda:
            "../envs/vicuna.yaml"
        shell:
            "download.py --url {params.url:q} --output {output.archive}"
            " {params.checks} --manifest {output.manifest} > {log} 2>&1"


if MMLU:

    # outputs/mmlu.json (per model, per method: ACC-all, per subject, questions) and
    # outputs/mmlu.tsv (one row per question: subject, index, gold, shots kept, each choice).
    rule mmlu:
        input:
            base=rules.convert_llama.output.checkpoint,
            finetuned=rules.merge_lora.output.checkpoint,
            tokenizer=config["base"]["tokenizer_model"],
            data=rules.mmlu_download.output.archive if MMLU_ARCHIVE else MMLU["data"],
        output:
            json=run_path("outputs/mmlu.json"),
            tsv=report(run_path("outputs/mmlu.tsv"), category="Evaluation"),
        params:
            shots=MMLU["shots"],
            subjects=" ".join(MMLU["subjects"]),
            mode=MMLU["mode"],
            batch_size=MMLU["batch_size"],
            device=config["inference"]["device"],
            precision=config["inference"]["precision"],
        resources:
            # one model at a time, generating and scoring: sized as py inference
            mem_mb=mem_mb("mmlu", "finetuned"),
            gpu=gpus(config["inference"]["device"]),
            runtime=scoring_runtime_min("base", MMLU_MINUTES_PER_GB),
        log:
            run_path("logs/mmlu.log"),
        benchmark:
            run_path("benchmarks/mmlu.tsv")
        conda:
            "../envs/vicuna.yaml"
        shell:
            "mmlu.py --data {input.data} --base {input.base} --finetuned {input.finetuned}"
            " --tokenizer_model {input.tokenizer} --shots {params.shots}"
            " --subjects {params.subjects} --mode {params.mode} --batch_size {params.batch_size}"
            " --device {params.device} --precision {params.precision}"
            " --json {output.json} --tsv {output.tsv} > {log} 2>&1"

