# Config validation (before any job starts) and the paths every stage agrees on.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version, validate

from vicuna import config_check, failed_jobs, run_layout, tokenizer
from vicuna.serve import engines
from vicuna.weights.layout import config_shape, model_files, planned_layout

min_version("9.0")


# The config files, in the order Snakemake merged them: config.yaml, or those given.
CONFIG_FILES = [
    str(Path(f).relative_to(Path.cwd())) if Path(f).is_relative_to(Path.cwd()) else str(f)
    for f in workflow.overwrite_configfiles
] or ["config.yaml"]
os.environ[run_layout.CONFIG_FILES_ENV] = " ".join(CONFIG_FILES)  # the headers of what jobs write


def config_error(error):
    """A config error ends the run in one line a fault, naming the file and the key (no
    Snakemake frame around it), exit 1."""
    raise SystemExit(config_check.report(error, CONFIG_FILES))


# Strict types first (YAML's 800.0 is no integer, its 2e-5 is a string: the message says so),
# then Snakemake's own validation, which also fills the schema's defaults, then what the schema
# cannot express, across keys (each message names the keys).
try:
    config_check.validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
except ValueError as e:
    config_error(e)
validate(config, schema="../schemas/config.schema.yaml")
try:
    config_check.check_keys(config)
except ValueError as e:
    config_error(e)

# The inference modes a run plans: every registered engine (vicuna/serve/engines), except that
# the gguf mode reads a GGUF release and `release.gguf: []` writes none.
MODES = [mode for mode in engines.REGISTRY if mode != "gguf" or config["release"]["gguf"]]

# base.tokenizer_model, where not given: the model directory's own tokenizer.model, else the one
# beside it (Meta's LLaMA download: llama/tokenizer.model beside llama/7B/).
TOKENIZER_GIVEN = "tokenizer_model" in config["base"]
config["base"].setdefault("tokenizer_model", config_check.default_tokenizer(config["base"]["model_dir"]))

# Every artifact of a run lives in its own folder, runs/<run_name>/ (run_name: model_name unless
# given), so that two configs in one checkout never read or overwrite each other's files; the
# inputs a config names (base, JSON, prompts) are read where they are.
RUN = run_layout.run_dir(config)


def run_path(path):
    """`path` inside this run's folder (wildcards left as they are)."""
    return f"{RUN}/{path}"


# Artifact names follow the tutorial inside the run: llama7B-vicuna-onmt.pt, finetuned_llama7B/...
MODEL = config["model_name"]
BASE_CHECKPOINT = run_path(f"{MODEL}-vicuna-onmt.pt")
FINETUNED = run_path(f"finetuned_{MODEL}")
SAVE_MODEL = f"{FINETUNED}/{MODEL}-vicuna-onmt"
STEP_CHECKPOINT = f"{SAVE_MODEL}_step_{config['train']['train_steps']}"

VALID = "valid" in config["data"]
# Corpora scored by `evaluate` alone, by name: their source is dataAI/heldout_<name>.txt.
HELDOUT = {name: f"heldout_{name}" for name in config["data"].get("heldout", {})}
SOURCES = {
    **config["data"]["corpora"],
    **({"valid": config["data"]["valid"]} if VALID else {}),
    **{source: config["data"]["heldout"][name] for name, source in HELDOUT.items()},
}
JSON_SOURCES = sorted(name for name, spec in SOURCES.items() if "json" in spec)
# The validation corpus and the held-out corpora, each scored for base and finetuned.
EVAL_CORPORA = ({"valid": "valid"} if VALID else {}) | dict(sorted(HELDOUT.items()))
# Benchmarks (config `benchmarks`): MMLU, planned only with its section.
MMLU = config.get("benchmarks", {}).get("mmlu")
# data.split_long: the training corpora are read through rule split_long (dataAI/<corpus>.split.txt).
SPLIT_LONG = config["data"].get("split_long", False)
URL_SOURCES = sorted(name for name, spec in SOURCES.items() if "url" in spec)


# Inference prompts: the tutorial's text file as given, or alpaca records that rule
# inference_prompts lays out in the template (their outputs the references, where each has one).
PROMPT_RECORDS = config["inference"]["input_examples"].endswith((".json", ".jsonl"))
if PROMPT_RECORDS:
    INPUT_EXAMPLES = run_path("inputs/input_examples.txt")
    RECORD_REFERENCES = "references" not in config["inference"] and config_check.records_have_outputs(
        config["inference"]["input_examples"]
    )
    REFERENCES = [run_path("inputs/references.txt")] if RECORD_REFERENCES else []
else:
    INPUT_EXAMPLES = config["inference"]["input_examples"]
    RECORD_REFERENCES = False
    REFERENCES = []
if "references" in config["inference"]:
    REFERENCES = [config["inference"]["references"]]


def one_of(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(names) if names else "(?!)"


def as_json(section):
    """A config section as one shell-quotable JSON string (for a script's --*_json flag)."""
    return json.dumps(section, sort_keys=True)


def base_model_files():
    """The foundation model's files, in whichever layout model_dir holds, as the converter reads
    them (vicuna.weights.layout.model_files); before the tiny default's base exists, the files its
    pretraining makes."""
    return [str(p) for p in model_files(config["base"]["model_dir"])]


def corpus_path(name):
    return run_path(f"dataAI/{name}.txt")


def corpus_provenance(name):
    """The file that says where corpus `name` came from: its flatten report (from JSON) or its
    download manifest (from a URL). Consumers ask for it beside the corpus: a corpus whose
    source changed kind (JSON <-> URL) is then remade, where Snakemake alone would trust the
    text file's metadata from the other rule."""
    if name in URL_SOURCES:
        return rules.download_dataset.output.manifest.format(corpus=name)
    return rules.flatten_dataset.output.report.format(corpus=name)


def training_corpus(name):
    """The file the finetuning reads for training corpus `name`: its windows with
    data.split_long (rule split_long, in rules/data.smk), else the corpus itself."""
    return rules.split_long.output.text.format(corpus=name) if SPLIT_LONG else corpus_path(name)


def peft_base_dir(base):
    """The adapter's base directory: release_hf_base's output, or the Hugging Face base's."""
    return base[0] if len(base) == 1 else str(Path(base[0]).parent)


def heldout_loss_json(wildcards=None):
    """outputs/heldout_loss.json where there are held-out corpora, else nothing (an input
    function: `all` and `evaluate` ask for it; rule heldout_loss is planned only then)."""
    return [rules.heldout_loss.output.json] if EVAL_CORPORA else []


def mmlu_json(wildcards=None):
    """outputs/mmlu.json where the config has `benchmarks.mmlu`, else nothing."""
    return [rules.mmlu.output.json] if MMLU else []


def modelfile_gguf(wildcards=None):
    """The GGUF the Modelfile names: the q4_k_m file (what a laptop holds), else the first of
    release.gguf."""
    types = config["release"]["gguf"]
    kind = "q4_k_m" if "q4_k_m" in types else types[0]
    return expand(rules.release_gguf.output.model, gguf_type=kind)


def gguf_releases(wildcards=None):
    """The GGUF files of release.gguf and the Modelfile beside them; nothing for `gguf: []`
    (an input function: `all` asks for it)."""
    if not config["release"]["gguf"]:
        return []
    return [*expand(rules.release_gguf.output.model, gguf_type=config["release"]["gguf"]),
            rules.release_modelfile.output.modelfile]


def card_flags():
    """The config keys a card states that no file of the run records: where the base was read,
    its Hub id (release.peft_base_model) and the licence (release.license), as flags."""
    flags = {"--base_model_dir": config["base"]["model_dir"],
             "--base_hub_id": config["release"].get("peft_base_model"),
             "--license": config["release"].get("license")}
    return " ".join(f"{flag} {shlex.quote(value)}" for flag, value in flags.items() if value)


def hub_folders(wildcards=None):
    """Each Hub folder's card (an input function: `all` asks for them)."""
    return expand(rules.publish.output.card, hub=list(HUB_RELEASES))


def check_inputs():
    """Every input the config names exists or one of the rules makes it (vicuna.config_check),
    checked at parse time once every rule is defined, whatever this run's earlier outputs are."""
    model_dir = config["base"]["model_dir"]
    if "synthetic" in config and not Path(model_dir).exists() and workflow.is_main_process:
        logger.info(f"base.model_dir {model_dir} does not exist yet: pretrain_base will build "
                    f"the tiny base there (config key `synthetic`)")
    faults = []
    try:
        config_check.check_inputs(config, lambda path: any(r.is_producer(path) for r in workflow.rules),
                                  defaulted=set() if TOKENIZER_GIVEN else {"base.tokenizer_model"})
    except ValueError as e:
        faults.append(str(e))
    # the base's architecture and tokenizer, where they exist: what the converter refuses
    # (another model_type, rotary scaling, a tokenizer that is not sentencepiece) is named now
    tokenizer_model = config["base"]["tokenizer_model"]
    kind = tokenizer.other_kind(tokenizer_model)
    if kind is not None:
        faults.append(f"base.tokenizer_model: {tokenizer_model}: {kind}")
    try:
        config_shape(model_dir)
    except ValueError as e:
        faults.append(f"base.model_dir: {' '.join(str(e).split())}")
    if faults:
        config_error(ValueError("; ".join(faults)))


def prune_older_releases():
    """Once a run has succeeded: the merged checkpoints and releases of other train_steps are
    removed, unless release.keep_older_steps (the main process only: never from inside a job)."""
    if config["release"].get("keep_older_steps") or not workflow.is_main_process:
        return
    for path in run_layout.prune_older_steps(SAVE_MODEL, config["train"]["train_steps"]):
        print(f"removed {path}: a release of an earlier train_steps (release.keep_older_steps keeps them)")
