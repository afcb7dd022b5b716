"""Which files a model directory holds, by layout, read from the directory alone (no torch: the
workflow asks at parse time which files the converter will read).

- Meta's: params.json + consolidated.NN.pth (1 to 8 model-parallel shards);
- Hugging Face's: config.json + model.safetensors / pytorch_model.bin, or their shards listed in
  an *.index.json.
"""

from __future__ import annotations

import json
from pathlib import Path

HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # each alone, or sharded with .index.json


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def detect_layout(model_dir: Path) -> str:
    """"meta" (params.json) or "hf" (config.json); Meta's when both and it has its shards."""
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such directory")
    meta, hf = (model_dir / "params.json").is_file(), (model_dir / "config.json").is_file()
    if meta and (not hf or any(model_dir.glob("consolidated.*.pth"))):
        return "meta"
    if hf:
        return "hf"
    raise ValueError(f"{model_dir}: unknown checkpoint layout: neither params.json (Meta's) "
                     "nor config.json (Hugging Face's)")


def load_meta_params(model_dir: Path) -> dict:
    path = model_dir / "params.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (Meta's checkpoint directory holds params.json)")
    return read_json(path)


def meta_shards(model_dir: Path, check: bool = True) -> list[Path]:
    """consolidated.00.pth, .01, ...; with `check`, a missing one is an error naming it."""
    shards = sorted(model_dir.glob("consolidated.*.pth"))
    if not check:
        return shards or [model_dir / "consolidated.00.pth"]
    if not shards:
        raise FileNotFoundError(f"{model_dir / 'consolidated.00.pth'}: missing (no shard)")
    for i, shard in enumerate(shards):
        if shard.name != f"consolidated.{i:02d}.pth":
            raise FileNotFoundError(f"{model_dir / f'consolidated.{i:02d}.pth'}: missing shard")
    return shards


def hf_weight_files(model_dir: Path, check: bool = True) -> dict[Path, list[str] | None]:
    """Each weight file -> the tensor names its index assigns it (None: no index). With `check`,
    a missing file is an error naming it; without, missing files are listed all the same (the
    workflow then names them as missing inputs)."""
    for stem in HF_WEIGHTS:
        index = model_dir / f"{stem}.index.json"
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError(f"{index}: no weight_map")
            files: dict[Path, list[str] | None] = {}
            for name, file in weight_map.items():
                files.setdefault(model_dir / file, []).append(name)
            for file in files:
                if check and not file.is_file():
                    raise FileNotFoundError(f"{file}: missing shard (listed in {index.name})")
            return files
        if (model_dir / stem).is_file():
            return {model_dir / stem: None}
        stem_, ext = stem.split(".")
        if any(model_dir.glob(f"{stem_}-*-of-*.{ext}")):
            if check:
                raise FileNotFoundError(f"{index}: missing (the checkpoint is sharded)")
            return {index: None}
    if check:
        raise FileNotFoundError(f"{model_dir / HF_WEIGHTS[0]}: missing (config.json but no "
                                f"{', '.join(HF_WEIGHTS)} or their .index.json)")
    return {model_dir / HF_WEIGHTS[0]: None}


def config_shape(model_dir: str | Path):
    """The base's shape read from its params.json or config.json alone (no weights; the
    vocabulary size where params.json says -1 is unknown here): what the workflow checks at
    parse time, so that an architecture or option the converter refuses (another model_type,
    rotary scaling, an unknown params.json key, ...) is named before any job runs. None where
    the directory holds neither file yet."""
    from vicuna.weights.shape import LlamaShape

    model_dir = Path(model_dir)
    try:
        layout = detect_layout(model_dir)
    except (FileNotFoundError, ValueError):
        return None
    if layout == "meta":
        return LlamaShape.from_params(load_meta_params(model_dir), -1, model_dir / "params.json")
    return LlamaShape.from_config(read_json(model_dir / "config.json"), model_dir / "config.json")


def planned_layout(model_dir: str | Path) -> str:
    """detect_layout for a workflow's plan: a directory that does not exist yet (the tiny
    default's, before its pretraining) or holds neither config is Meta's, as the files it waits
    for are (the converter then names what is wrong)."""
    try:
        return detect_layout(Path(model_dir))
    except (FileNotFoundError, ValueError):
        return "meta"


def model_files(model_dir: str | Path) -> list[Path]:
    """The files the converter reads from `model_dir`, by its layout: Meta's params.json and
    shards, or Hugging Face's config.json, index and weight files. A directory that does not
    exist yet (the tiny default's, before its pretraining) or holds neither config is Meta's:
    params.json + consolidated.00.pth. Files the converter would need but are missing are listed
    too, so that a workflow names them."""
    model_dir = Path(model_dir)
    if planned_layout(model_dir) == "meta":
        return [model_dir / "params.json", *meta_shards(model_dir, check=False)]
    weights = hf_weight_files(model_dir, check=False)
    indexes = [model_dir / f"{stem}.index.json" for stem in HF_WEIGHTS]
    listed = [p for p in indexes if p.is_file()]
    return [model_dir / "config.json", *listed, *sorted(p for p in weights if p not in listed)]
