"""A release's model card: README.md in the Hugging Face Hub's layout, YAML front matter (the
licence left for the user to set, the base and datasets where their Hub ids are known, the
library and tags of the release's kind), then what the model is, its base, its data, the recipe,
this run's evaluation, the prompt template and how to run it. Every figure is read from the run's
files (`run_files`) and the release's own (`releases`); the card is pure text built from them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from vicuna import prompt
from vicuna.publish.releases import EXAMPLE, KINDS, Release
from vicuna.publish.run_files import RunFacts

# No licence is made up: the Hub accepts none but its licence ids, so this one cannot be
# uploaded by mistake (release.license replaces it).
LICENSE_PLACEHOLDER = "FILL-IN-release.license"
README = "README.md"
MARK = "wrote this card from the run's own files"  # how a card is recognised (hub_folder)
HUB_DATASET = re.compile(r"^https?://(?:www\.)?(?:huggingface\.co|hf\.co)/datasets/([\w.-]+/[\w.-]+)")
WORKFLOW = ("https://github.com/OpenNMT/OpenNMT-py/blob/master/docs/source/examples/replicate_vicuna/"
            "ReplicateVicuna.md")


@dataclass(frozen=True)
class CardInputs:
    """What the card is written from, besides the run's files and the release: the config's
    few keys that no file of the run records."""
    base_model_dir: str  # base.model_dir: where the base was read
    base_hub_id: str | None = None  # release.peft_base_model: the base's Hub id, if it has one
    license: str | None = None  # release.license
    header: str = ""  # the "written by" comment (vicuna.run_layout.written_by)


def release_name(release: Release) -> str:
    """llama7B-vicuna-onmt_step_4000, from any of the release's names."""
    name = release.root.name if release.root else release.files[0].name
    return re.sub(r"(\.concat.*|_PEFT)$", "", name)


def hub_datasets(sources: dict[str, str]) -> list[str]:
    """The Hub ids of the corpora fetched from the Hub (a huggingface.co/datasets/... URL)."""
    return sorted({m.group(1) for source in sources.values() if (m := HUB_DATASET.match(source))})


def front_matter(release: Release, facts: RunFacts, inputs: CardInputs) -> str:
    kind = KINDS[release.kind]
    meta: dict[str, Any] = {"license": inputs.license or LICENSE_PLACEHOLDER}
    if inputs.base_hub_id:
        meta["base_model"] = inputs.base_hub_id
    if datasets := hub_datasets(facts.sources):
        meta["datasets"] = datasets
    meta["library_name"] = kind.library_name
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = list(dict.fromkeys([*kind.tags, "vicuna", "lora", "opennmt-py"]))
    comments = inputs.header
    if not inputs.license:
        comments += (f"# license: set release.license in the config to this model's licence (a Hub "
                     f"licence id; the base's licence binds it) and rerun: the Hub refuses "
                     f"{LICENSE_PLACEHOLDER}\n")
    return "---\n" + comments + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def training_rows(facts: RunFacts) -> list[dict[str, str]]:
    return [row for row in facts.corpora if row["use"] == "train"]


def intro(release: Release, facts: RunFacts, inputs: CardInputs) -> str:
    recipe = facts.recipe
    trained = training_rows(facts)
    examples = sum(int(row["training_examples"]) for row in trained)
    names = ", ".join(row["corpus"] for row in trained)
    what = {"huggingface": "the LoRA merged into the base, in Hugging Face's layout "
                           f"({release.weights})",
            "gguf": f"the LoRA merged into the base, as GGUF files ({release.weights})",
            "peft": "the LoRA alone, as a PEFT adapter of the base in Hugging Face's layout"}
    return (f"A chat model in the style of Vicuna: the base `{inputs.base_model_dir}` finetuned "
            f"with LoRA by OpenNMT-py for {_number(recipe['train_steps'])} steps on "
            f"{_number(examples)} examples ({names}); this is {what[release.kind]}. It was made "
            f"by a Snakemake workflow of OpenNMT-py's tutorial [supervised finetuning of LLaMA 7B "
            f"to replicate Vicuna]({WORKFLOW}), which {MARK}.\n")


def base_section(release: Release, inputs: CardInputs) -> str:
    text = f"## Base\n\n`{inputs.base_model_dir}`"
    if inputs.base_hub_id:
        text += f", on the Hub [{inputs.base_hub_id}](https://huggingface.co/{inputs.base_hub_id})"
    text += " (LLaMA's architecture). "
    text += ("The adapter's shape:" if release.kind == "peft" else
             "The model's shape, as this release's files state it:") + "\n\n"
    return text + _table(["", ""], [[k, _number(v)] for k, v in release.shape.items()])


def data_section(facts: RunFacts) -> str:
    weights = {name: spec.get("weight", "-") for name, spec in facts.recipe["data"].items()}
    rows = []
    for row in facts.corpora:
        use = "training" if row["use"] == "train" else "evaluation (scored whole)"
        rows.append([f"`{row['corpus']}`", use, f"`{facts.sources.get(row['corpus'], '-')}`",
                     weights.get(row["corpus"], "-"), _number(int(row["examples"])),
                     _number(int(row["tokens"])),
                     _number(int(row["training_examples"])) if row["use"] == "train" else "-"])
    return ("## Data\n\nEach corpus as the run's data report counts it (tokens with the base's "
            "tokenizer, `<s>` and `</s>` included); training corpora are sampled by weight.\n\n"
            + _table(["corpus", "use", "source", "weight", "examples", "tokens", "trained on"], rows))


def recipe_section(facts: RunFacts) -> str:
    r = facts.recipe
    accum = r["accum_count"][-1] if isinstance(r["accum_count"], list) else r["accum_count"]
    split = any(str(spec.get("path_src", "")).endswith(".split.txt") for spec in r["data"].values())
    rows = [
        ["LoRA", f"rank {r['lora_rank']}, alpha {r['lora_alpha']} (scale "
                 f"{r['lora_alpha'] / r['lora_rank']:g}), dropout {r['lora_dropout']}, on "
                 + ", ".join(r["lora_layers"]) + " (OpenNMT-py's names)"],
    ]
    if r.get("quant_layers"):
        rows.append(["frozen in 8-bit while training", ", ".join(r["quant_layers"])
                     + f" ({r.get('quant_type')})"])
    rows += [
        ["steps", _number(r["train_steps"])],
        ["batch", f"{_number(r['batch_size'])} {r['batch_type']} x {accum} accumulated"],
        ["context", f"{_number(r['src_seq_length'])} tokens: longer examples were "
                    + ("split into windows of whole rounds" if split else "dropped")],
        ["loss", "the answers only (zero_out_prompt_loss)" if r.get("zero_out_prompt_loss")
         else "every token of an example, prompt and answer"],
        ["optimizer", f"{r['optim']}, learning rate {r['learning_rate']}, warm-up "
                      f"{r['warmup_steps']} steps" + (f", beta2 {r['adam_beta2']}" if "adam_beta2" in r
                                                      else "")],
        ["precision", r["model_dtype"]],
    ]
    return ("## Recipe\n\nAs the finetuning config the training read states it "
            "(OpenNMT-py's `onmt_train` options):\n\n" + _table(["", ""], rows))


def describe(metric: str, facts: RunFacts) -> str:
    """What an evaluation metric measures, in words."""
    corpora = {row["corpus"] for row in facts.corpora}

    def corpus(name: str) -> str:
        if name == "valid":
            return "the validation corpus `valid`"
        return f"the held-out corpus `heldout_{name}`" if f"heldout_{name}" in corpora else f"`{name}`"

    if m := re.fullmatch(r"mmlu_(\w+)_acc", metric):
        text = f"MMLU accuracy (ACC-all), method `{m.group(1)}`"
        if facts.mmlu:
            text += f", {facts.mmlu['shots']}-shot, {_number(facts.mmlu['n'])} questions"
        return text
    if m := re.fullmatch(r"(\w+)_answer_loss", metric):
        return f"loss per token of the answers of {corpus(m.group(1))}"
    if m := re.fullmatch(r"(\w+)_answer_perplexity", metric):
        return f"perplexity on the answers of {corpus(m.group(1))}"
    if m := re.fullmatch(r"(\w+)_loss", metric):
        return f"loss per token on {corpus(m.group(1))}"
    if m := re.fullmatch(r"(\w+)_perplexity", metric):
        return f"perplexity on {corpus(m.group(1))}"
    if m := re.fullmatch(r"(\w+)_(\w+)_agreement", metric):
        return (f"the share of prompts on which the finetuned model's greedy answers are the "
                f"same in the workflow's `{m.group(1)}` and `{m.group(2)}` engines")
    return {"exact_match": "share of greedy answers equal to the reference",
            "exact_match_eos": "the same, and the model stopped by itself (`</s>`)"}.get(metric, "")


def evaluation_section(facts: RunFacts) -> str:
    result = facts.evaluation
    metrics = sorted({k for name in ("base", "finetuned") for k in result[name]})
    rows = [[f"`{m}`", result["base"].get(m, ""), result["finetuned"].get(m, ""),
             describe(m, facts)] for m in metrics]
    text = ("## Evaluation\n\nThis run's evaluation of the base and the finetuned model "
            "(its `outputs/eval.json`" + (" and `outputs/mmlu.json`" if facts.mmlu else "")
            + "):\n\n")
    text += _table(["metric", "base", "finetuned", "what"], rows) if rows else (
        "no figure of either model: the run's config has no references, held-out corpus or "
        "MMLU to score them with.\n")
    agreements = [(k, v) for k, v in sorted(result.items())
                  if k not in ("base", "finetuned") and not isinstance(v, dict | list)]
    if agreements:
        text += "\n" + "".join(f"- `{k}`: {v}" + (f" ({what})" if (what := describe(k, facts)) else "")
                               + "\n" for k, v in agreements)
    return text


def render_template(template: str, bos_token: str) -> str:
    """The prompt the chat template gives for one user message, rendered by Jinja as
    transformers renders a chat template."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    return env.from_string(template).render(
        messages=[{"role": "user", "content": EXAMPLE}], add_generation_prompt=True,
        bos_token=bos_token, eos_token="</s>", raise_exception=raise_exception)


def template_section(release: Release) -> str:
    rendered = render_template(release.chat_template, release.bos_token)
    return f"""## Prompt template

The model was finetuned on conversations laid out so: the task line, each round's
`### Instruction:` and `### Response:`, and for the model to answer, an open `### Response:`.
After `{release.bos_token}` (the tokenizer's begin-of-sequence token), one user message gives:

```text
{rendered}
```

An answer ends with `</s>`; the model may open a next round by itself, so stop at
`{json.dumps(prompt.STOP)}`. A system message is refused: the model knows one fixed task line.

<details><summary>The chat template (Jinja), from {release.template_source}</summary>

```jinja
{release.chat_template}
```

</details>
"""


def files_section(release: Release) -> str:
    types = release.notes.get("types")
    rows = []
    for path in release.files:
        if types is not None:  # GGUF: files by name, each with its type
            rows.append([f"`{path.name}`", types.get(path.name, ""), _size(path.stat().st_size)])
        else:
            name = path.relative_to(release.root).as_posix() if release.root else path.name
            rows.append([f"`{name}`", _size(path.stat().st_size)])
    return "## Files\n\n" + _table(["file", "type", "size"] if types is not None else ["file", "size"],
                                     rows)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    return next(f"{size / 1024**k:.1f} {unit}" for k, unit in ((3, "GB"), (2, "MB"), (1, "kB"))
                if size >= 1024**k)


def licence_section(inputs: CardInputs) -> str:
    if inputs.license:
        return (f"## Licence\n\n`{inputs.license}` (the workflow's `release.license`). The base's "
                f"licence and the data's terms apply as well.\n")
    return (f"## Licence\n\nNot set: the front matter's `license: {LICENSE_PLACEHOLDER}` is a "
            f"placeholder, no licence id the Hub accepts. This model is bound by its base's "
            f"licence and its data's terms: set `release.license` in the run's config to the "
            f"Hub's id of the licence that applies (e.g. `other` for LLaMA's non-commercial "
            f"licence, `llama2`) and run the workflow again.\n")


def model_card(release: Release, facts: RunFacts, inputs: CardInputs) -> str:
    kind = KINDS[release.kind]
    sections = [
        front_matter(release, facts, inputs),
        f"# {release_name(release)}: {kind.title}\n",
        intro(release, facts, inputs),
        base_section(release, inputs),
        data_section(facts),
        recipe_section(facts),
        evaluation_section(facts),
        template_section(release),
        "## How to run it\n\n" + kind.usage(release),
        files_section(release),
        licence_section(inputs),
    ]
    return "\n".join(sections)
