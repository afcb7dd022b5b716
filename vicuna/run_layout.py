"""A run's folder, runs/<run_name>/: the releases it keeps, and which of them is the newest.

Every artifact of a config lives under its run's folder (rules/common.smk), named as the
tutorial names them: finetuned_<model>/<model>-vicuna-onmt_step_N.concat.pt and its releases
(.concat_CT2, .concat_HF, _PEFT). A run whose train_steps changed would otherwise keep the
releases of every step count it was ever trained to, 13 GB each at 7B.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import yaml

RUNS = "runs"

# What merge_lora and the releases add to a step checkpoint's name.
RELEASE_SUFFIXES = (".concat.pt", ".concat_CT2", ".concat_HF", "_PEFT")


def run_dir(config: dict) -> str:
    """runs/<run_name>, run_name defaulting to model_name."""
    return f"{RUNS}/{config.get('run_name', config['model_name'])}"


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
                         + "|".join(map(re.escape, RELEASE_SUFFIXES)) + r")$")
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


def main(argv: list[str] | None = None) -> None:
    """Print the run folder of the config files given (as `make chat CONFIG=...` needs it)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("configs", nargs="+", help="config files, in the order Snakemake merges them")
    a = p.parse_args(argv)
    try:
        print(run_dir(merged_config(a.configs)))
    except (OSError, KeyError, yaml.YAMLError) as e:
        sys.exit(f"error: {' '.join(a.configs)}: no run folder ({type(e).__name__}: {e})")


if __name__ == "__main__":
    main()
