# Publishing: each release a user may put on the Hugging Face Hub, in a folder ready to upload
# as it is (`hf upload OWNER/NAME FOLDER`): the release's files (hard links, no second copy) and
# its model card, README.md, written from the run's own files. The card is the rule's output,
# so a new evaluation rewrites the cards and never reruns a release.

# The Hub folders by kind (finetuned_<model>/..._step_N.hub_<kind>): the release each publishes,
# and the kind model_card.py reads it as. GGUF only where release.gguf names a type.
HUB_RELEASES = {
    "HF": ("huggingface", [rules.release_hf.output.model]),
    "PEFT": ("peft", [rules.release_peft.output.adapter]),
    **({"GGUF": ("gguf", gguf_releases())} if config["release"]["gguf"] else {}),
}
# What every card is written from, besides its release: the run's own files.
CARD_SOURCES = dict(
    finetune_config=rules.finetune_config.output.config,
    data_report=rules.data_report.output.stats,
    provenance=[corpus_provenance(name) for name in SOURCES],
    evaluation=rules.evaluate.output.json,
    mmlu=mmlu_json,
)


# finetuned_<model>/<model>-vicuna-onmt_step_N.hub_<HF|GGUF|PEFT>/README.md, beside the
# release's files: the folder to upload
rule publish:
    input:
        release=lambda w: HUB_RELEASES[w.hub][1],
        **CARD_SOURCES,
    output:
        card=f"{STEP_CHECKPOINT}.hub_{{hub}}/README.md",
    wildcard_constraints:
        hub=one_of(HUB_RELEASES),
    params:
        kind=lambda w: HUB_RELEASES[w.hub][0],
        folder=lambda w, output: os.path.dirname(output.card),
        mmlu=lambda w, input: f"--mmlu {input.mmlu}" if input.mmlu else "",
        card=card_flags(),
    log:
        run_path("logs/publish_{hub}.log"),
    conda:
        "../envs/vicuna.yaml"
    shell:
        "model_card.py --kind {params.kind} --release {input.release} {params.card}"
        " --finetune_config {input.finetune_config} --data_report {input.data_report}"
        " --provenance {input.provenance} --evaluation {input.evaluation} {params.mmlu}"
        " --output {params.folder} --force > {log} 2>&1"

