# Vicuna from LLaMA with OpenNMT-py: the tutorial "supervised finetuning of LLaMA 7B to
# replicate Vicuna" as one dependency graph. The default config.yaml is a tiny CPU run;
# configs/llama7b-vicuna.yaml is the tutorial's 7B run.

# config.yaml is the default; a config given with --configfile replaces it whole (several
# files are merged in order: a site's or a test's override on top), so nothing of the tiny
# default leaks into another run. Snakemake itself would merge them into config.yaml.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/synthetic.smk"
include: "rules/data.smk"
include: "rules/checkpoint.smk"
include: "rules/finetune.smk"
include: "rules/release.smk"
include: "rules/inference.smk"
include: "rules/benchmark.smk"
include: "rules/evaluate.smk"
include: "rules/publish.smk"


# Too light to send to a cluster: they write a small file from the config (publish: a card
# and links to the release's files).
localrules:
    all,
    finetune_config,
    translate_opts,
    release_modelfile,
    publish,


# Batch predictions in both modes, the releases and their Hub folders, and every artifact on
# the way.
rule all:
    input:
        rules.extract_vocabulary.output.vocab,
        rules.finetune_samples.output.samples,
        rules.data_report.output.stats,
        expand(rules.simple_inference.output.predictions, mode=MODES),
        rules.release_hf.output.model,
        rules.release_peft.output.adapter,
        gguf_releases,
        rules.evaluate.output.json,
        heldout_loss_json,
        rules.training_curves.output.curves,
        mmlu_json,
        hub_folders,
    default_target: True


# The inputs the config names that no rule makes must exist (a key and its path, if not).
check_inputs()


onsuccess:
    prune_older_releases()


# Each failed job's reason, from its log (the profiles do not print whole logs: see
# vicuna/failed_jobs.py), e.g. where an interrupted finetuning resumes.
onerror:
    if why := failed_jobs.summary(log):
        print(why, file=sys.stderr)
