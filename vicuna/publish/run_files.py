"""The run's files a model card is written from, each read with a one-line error that names the
file: the finetuning config the training read (replicate_vicuna.yaml), the data report
(dataAI/stats.tsv), each corpus's provenance (its flatten report or download manifest), the
evaluation (outputs/eval.json) and MMLU's scores (outputs/mmlu.json)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# What the card's recipe reads from the finetuning config (vicuna.train.finetune_config writes
# them all); quant_layers / quant_type and zero_out_prompt_loss only where they apply.
RECIPE_KEYS = ("data", "train_steps", "batch_type", "batch_size", "accum_count", "src_seq_length",
               "optim", "learning_rate", "warmup_steps", "model_dtype", "lora_layers", "lora_rank",
               "lora_alpha", "lora_dropout")
REPORT_COLUMNS = ("corpus", "use", "examples", "tokens", "training_examples")
FLATTEN, MANIFEST = ".flatten.json", ".manifest.json"


@dataclass(frozen=True)
class RunFiles:
    """Where each of the run's files is (mmlu: None where the config has no benchmarks.mmlu)."""
    finetune_config: Path
    data_report: Path
    provenance: list[Path]
    evaluation: Path
    mmlu: Path | None = None

    def missing(self) -> list[Path]:
        paths = [self.finetune_config, self.data_report, *self.provenance, self.evaluation,
                 *([self.mmlu] if self.mmlu else [])]
        return [p for p in paths if not p.is_file()]


@dataclass(frozen=True)
class RunFacts:
    """What the card says of the run, as its files hold it."""
    recipe: dict[str, Any]
    corpora: list[dict[str, str]]
    sources: dict[str, str]
    evaluation: dict[str, Any]
    mmlu: dict[str, Any] | None


def check_present(files: RunFiles) -> None:
    """Every file there, else one FileNotFoundError naming each missing one (before any work)."""
    if missing := files.missing():
        raise FileNotFoundError(f"missing: {', '.join(map(str, missing))} (the run's files the "
                                f"model card is written from: run the workflow's `all` first)")


def json_object(path: Path) -> dict:
    """A JSON file that must hold an object; named errors otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def read_recipe(path: Path) -> dict[str, Any]:
    """The finetuning config as onmt_train read it; a named error for a key it lacks."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a finetuning config (no mapping)")
    if missing := [k for k in RECIPE_KEYS if k not in config]:
        raise ValueError(f"{path}: no {', '.join(missing)}: not the finetuning config "
                         f"write_finetune_config.py writes")
    return config


def read_data_report(path: Path) -> list[dict[str, str]]:
    """stats.tsv's rows, one per corpus (data_report.py's)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or (missing := [c for c in REPORT_COLUMNS if c not in rows[0]]):
        raise ValueError(f"{path}: no {', '.join(missing) if rows else 'row'}: not the data "
                         f"report data_report.py writes")
    return rows


def read_sources(paths: list[Path]) -> dict[str, str]:
    """Where each corpus came from, by name: the JSON its flatten report names (`input`), or the
    URL its download manifest names (`source`)."""
    sources = {}
    for path in paths:
        if path.name.endswith(FLATTEN):
            name, key = path.name.removesuffix(FLATTEN), "input"
        elif path.name.endswith(MANIFEST):
            name, key = path.name.removesuffix(MANIFEST), "source"
        else:
            raise ValueError(f"{path}: neither a flatten report (*{FLATTEN}) nor a download "
                             f"manifest (*{MANIFEST})")
        record = json_object(path)
        if not isinstance(record.get(key), str):
            raise ValueError(f"{path}: no {key!r}: not what the workflow writes")
        sources[name] = record[key]
    return sources


def read_evaluation(path: Path) -> dict[str, Any]:
    """eval.json: {"base": {metric: value}, "finetuned": {...}, <agreement>: value, ...}."""
    result = json_object(path)
    for name in ("base", "finetuned"):
        if not isinstance(result.get(name), dict):
            raise ValueError(f"{path}: no {name!r} metrics: not the evaluation evaluate.py writes")
    return result


def read_mmlu(path: Path) -> dict[str, Any]:
    """mmlu.json: shots, the number of questions, and each model's ACC-all per method."""
    result = json_object(path)
    if not isinstance(result.get("shots"), int) or not isinstance(result.get("n"), int):
        raise ValueError(f"{path}: no 'shots' or 'n': not the scores mmlu.py writes")
    return result


def read(files: RunFiles) -> RunFacts:
    check_present(files)
    return RunFacts(recipe=read_recipe(files.finetune_config),
                    corpora=read_data_report(files.data_report),
                    sources=read_sources(files.provenance),
                    evaluation=read_evaluation(files.evaluation),
                    mmlu=read_mmlu(files.mmlu) if files.mmlu else None)
