#!/usr/bin/env python
"""Write a release's Hub folder: its model card, README.md in the Hugging Face Hub's layout,
written from the run's own files (the finetuning config, the data report, the corpora's
provenance, the evaluation), beside the release's files (hard links, no second copy). Upload it
as it is: `hf upload OWNER/NAME FOLDER`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna import run_layout
from vicuna.files import check_output
from vicuna.publish import card, hub_folder, run_files
from vicuna.publish.releases import KINDS

# The job that writes each kind's folder (rule publish's hub, rules/publish.smk), for the header.
JOBS = {"huggingface": "publish, hub HF", "gguf": "publish, hub GGUF", "peft": "publish, hub PEFT"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kind", required=True, choices=list(KINDS), help="the release's kind")
    p.add_argument("--release", required=True, nargs="+", type=Path,
                   help="the release: its directory (huggingface, peft), or its .gguf files and "
                        "Ollama .Modelfile (gguf)")
    p.add_argument("--finetune_config", required=True, type=Path,
                   help="the finetuning config the training read (replicate_vicuna.yaml)")
    p.add_argument("--data_report", required=True, type=Path, help="dataAI/stats.tsv")
    p.add_argument("--provenance", nargs="*", default=[], type=Path,
                   help="each corpus's flatten report (<corpus>.flatten.json) or download "
                        "manifest (<corpus>.manifest.json)")
    p.add_argument("--evaluation", required=True, type=Path, help="outputs/eval.json")
    p.add_argument("--mmlu", type=Path, help="outputs/mmlu.json, where the run scored MMLU")
    p.add_argument("--base_model_dir", required=True, help="where the base was read (base.model_dir)")
    p.add_argument("--base_hub_id", help="the base's Hub id, if it has one (front matter's base_model)")
    p.add_argument("--license", help="the model's licence, a Hub licence id (release.license); "
                                     "without it the card holds a placeholder the Hub refuses")
    p.add_argument("--output", required=True, type=Path, help="the folder to write")
    p.add_argument("--force", action="store_true",
                   help="replace an output that is not such a folder (only if nothing is lost)")
    a = p.parse_args(argv)
    try:
        check_output(a.output, force=a.force, own=hub_folder.hub_folder)
        files = run_files.RunFiles(a.finetune_config, a.data_report, a.provenance, a.evaluation,
                                   a.mmlu)
        if missing := [*map(str, files.missing()), *(str(r) for r in a.release if not r.exists())]:
            raise FileNotFoundError(f"missing: {', '.join(missing)} (what the model card is "
                                    f"written from: run the workflow's `all` first)")
        release = KINDS[a.kind].read(a.release)
        facts = run_files.read(files)
        inputs = card.CardInputs(
            base_model_dir=a.base_model_dir, base_hub_id=a.base_hub_id, license=a.license,
            header=run_layout.written_by(JOBS[a.kind], "release.license in the config"))
        text = card.model_card(release, facts, inputs)
        copied = hub_folder.write_folder(a.output, release.files, release.root, text, force=a.force)
    except (OSError, ValueError, KeyError) as e:
        sys.exit("error: " + " ".join(str(e).split()))
    print(f"wrote {a.output}/{card.README} and {len(release.files)} files of the release "
          + (f"(copied, not linked: {', '.join(copied)})" if copied else "(hard links)"))
    if not a.license:
        print(f"note: no --license: the card's license is {card.LICENSE_PLACEHOLDER}, which the "
              f"Hub refuses; set release.license")


if __name__ == "__main__":
    main()
