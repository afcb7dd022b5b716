"""A run's folder, runs/<run_name>/: the releases it keeps, and which of them is the newest.

Every artifact of a config lives under its run's folder (rules/common.smk), named as the
tutorial names them: finetuned_<model>/<model>-vicuna-onmt_step_N.concat.pt and its releases
(.concat_CT2, .concat_HF, _PEFT, .concat-<type>.gguf with .concat.Modelfile). A run whose
train_steps changed would otherwise keep the releases of every step count it was ever trained
to, 13 GB each at 7B.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

RUNS = "runs"
# The config files a Snakemake run was given, for the headers of the files its jobs write: in
# the environment (jobs inherit it, on SLURM nodes too), not in a rule's params, so that a
# config file's name alone never reruns a job.
CONFIG_FILES_ENV = "VICUNA_CONFIG_FILES"


def written_by(rule: str, edit: str = "the config") -> str:
    """The header line of a file a rule writes from the config: which config files, and where
    to change what it holds."""
    files = os.environ.get(CONFIG_FILES_ENV) or "config.yaml"
    return f"# Written by the workflow from {files} (rule {rule}): edit {edit}, not this file.\n"

# What merge_lora and the releases add to a step checkpoint's name; a GGUF's names its type
# (.concat-q8_0.gguf), and a Hub folder its release's kind (.hub_GGUF: rule publish), matched by
# RELEASE_PATTERNS.
RELEASE_SUFFIXES = (".concat.pt", ".concat_CT2", ".concat_HF", "_PEFT", ".concat.Modelfile")
RELEASE_PATTERNS = (*map(re.escape, RELEASE_SUFFIXES), r"\.concat-[a-z0-9_]+\.gguf",
                    r"\.hub_[A-Z]+")


def run_dir(config: dict) -> str:
    """runs/<run_name>, run_name defaulting to model_name, or <model_name>-<variant> where a
    layered recipe names itself (so that the recipe on two bases makes two runs)."""
    if "run_name" in config:
        return f"{RUNS}/{config['run_name']}"
    variant = config.get("variant")
    return f"{RUNS}/{config['model_name']}" + (f"-{variant}" if variant else "")


def merged_config(paths: list[str]) -> dict:
    """The config files merged in order, key by key, as Snakemake merges --configfile files."""
    def merge(into: dict, other: dict) -> dict:
        for key, value in other.items():
            into[key] = merge(into.get(key, {}), value) if isinstance(value, dict) and \
                isinstance(into.get(key), dict) else value
        return into

    config: dict = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            merge(config, yaml.safe_load(f) or {})
    return config


def step_releases(save_model: str | Path) -> dict[int, list[Path]]:
    """The merged checkpoints and releases beside `save_model` (.../<model>-vicuna-onmt), by
    step."""
    save_model = Path(save_model)
    pattern = re.compile(re.escape(save_model.name) + r"_step_(\d+)("
                         + "|".join(RELEASE_PATTERNS) + r")$")
    found: dict[int, list[Path]] = {}
    if save_model.parent.is_dir():
        for path in sorted(save_model.parent.iterdir()):
            if m := pattern.match(path.name):
                found.setdefault(int(m.group(1)), []).append(path)
    return found


def prune_older_steps(save_model: str | Path, step: int) -> list[Path]:
    """Remove the merged checkpoints and releases of steps other than `step`; what was removed."""
    removed = []
    for other, paths in step_releases(save_model).items():
        if other == step:
            continue
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def newest_release(save_model: str | Path, suffix: str) -> Path | None:
    """The release of the highest step that has one with `suffix` (e.g. ".concat_CT2")."""
    steps = [(step, path) for step, paths in step_releases(save_model).items()
             for path in paths if path.name.endswith(suffix)]
    return max(steps)[1] if steps else None


# The first suffix a name ends with names its kind (.hub_PEFT before _PEFT).
RELEASE_KINDS = {".hub_HF": "Hub folder", ".hub_PEFT": "Hub folder", ".hub_GGUF": "Hub folder",
                 ".concat_CT2": "CTranslate2", ".concat_HF": "Hugging Face", "_PEFT": "PEFT adapter",
                 ".gguf": "GGUF", ".Modelfile": "Ollama Modelfile"}


def size_text(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return next(f"{size / 1024**k:.1f} {unit}" for k, unit in ((3, "GB"), (2, "MB"), (1, "kB"), (0, "B"))
                if size >= 1024**k or k == 0)


def summary(run: str | Path, configs: list[str] | None = None) -> str:
    """What a run made, how good it is, and what to do next: `make run`'s last words.
    `configs`: the config files the run was given (none: config.yaml), repeated in the next
    commands."""
    run = Path(run)
    if not run.is_dir():
        return f"{run}: nothing made yet"
    lines = [f"Made in {run}/ (every job's log in {run}/logs/):", ""]
    table = run / "outputs" / "eval.tsv"
    if table.is_file():
        rows = [line.split("\t") for line in table.read_text(encoding="utf-8").splitlines()]
        width = max(len(r[0]) for r in rows)
        lines += [f"Evaluation ({table}):"]
        lines += [f"  {r[0]:<{width}}  " + "  ".join(f"{c:>9}" for c in r[1:]) for r in rows]
        lines.append("")
    for save_model in sorted(run.glob("finetuned_*/*-vicuna-onmt_step_*.concat.pt")):
        stem = save_model.name.split("_step_")[0]
        releases = step_releases(save_model.parent / stem)
        step = max(releases)
        lines.append(f"Releases of step {step}:")
        for path in releases[step]:
            kind = next((k for suffix, k in RELEASE_KINDS.items() if path.name.endswith(suffix)),
                        "merged checkpoint")
            lines.append(f"  {kind:<17} {path}  ({size_text(path)})")
        lines.append("")
        break
    given = " ".join(configs or [])
    make_args = f" CONFIG={given!r}" if " " in given else f" CONFIG={given}" if given else ""
    next_steps = {
        f"make chat{make_args}": "chat with it in a browser (http://127.0.0.1:7860)",
        f"make serve{make_args}": "an OpenAI-compatible API (http://127.0.0.1:8000/v1)",
        "snakemake --report report.html" + (f" --configfile {given}" if given else ""):
            "the graph, curves and evaluation in one file",
        "hf upload OWNER/NAME <a Hub folder>": "publish a release with its model card "
                                               "(docs/releases.md)",
        "docs/own-model.md": "your own base and data (the README: the 7B run)",
    }
    width = max(map(len, next_steps))
    lines += ["Next:", *(f"  {command:<{width}}  {what}" for command, what in next_steps.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the run folder of the config files given (as `make chat CONFIG=...` needs it), or
    with --summary what that run made (as `make run` ends)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("configs", nargs="+", help="config files, in the order Snakemake merges them")
    p.add_argument("--summary", action="store_true", help="what the run made, and what next")
    p.add_argument("--given", action="store_true",
                   help="the configs were given (CONFIG=...): the next commands repeat them")
    a = p.parse_args(argv)
    try:
        run = run_dir(merged_config(a.configs))
        print(summary(run, a.configs if a.given else None) if a.summary else run)
    except (OSError, KeyError, yaml.YAMLError) as e:
        sys.exit(f"error: {' '.join(a.configs)}: no run folder ({type(e).__name__}: {e})")


if __name__ == "__main__":
    main()
