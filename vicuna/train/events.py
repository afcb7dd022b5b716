"""TensorBoard event files, in one place: which files a log directory or a training's history
holds, their records and scalars, cutting a killed run's files back to the step a resume starts
from (TFRecord framing, as TensorBoard writes), and the history a finished training leaves for
its curves."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vicuna.files import atomic_path, write_json

# OpenNMT-py writes one event file per run, in <tensorboard_log_dir>/<date of the run>/.
EVENT_FILES = "events.out.tfevents.*"


def tensorboard_dir(cfg: dict[str, Any]) -> str | None:
    """Where the finetuning config has OpenNMT-py write its TensorBoard logs, if it does."""
    return cfg.get("tensorboard_log_dir") if cfg.get("tensorboard") else None


def event_files(log_dir: str | Path, *, required: bool = False) -> list[Path]:
    """The TensorBoard event files under `log_dir`, oldest run first (each file's name holds the
    time its writer started: events.out.tfevents.<seconds>.<host>.<pid>.<n>); `required`: the
    directory must exist."""
    if required and not Path(log_dir).is_dir():
        raise FileNotFoundError(f"{log_dir}: no such directory (TensorBoard logs)")

    def started(path: Path) -> tuple[int, str]:
        seconds = path.name.split(".")[3]
        return (int(seconds) if seconds.isdigit() else 0, str(path))

    return sorted(Path(log_dir).rglob(EVENT_FILES), key=started)


def read_events(path: Path) -> list[tuple[bytes, Any]]:
    """The records of an event file, each as (its bytes, the Event); a record cut short by a
    kill (the last one) is left out."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    return [(raw, Event.FromString(raw)) for raw in RawEventFileLoader(str(path)).Load()]


def keep_events_until(log_dir: str | Path, step: int) -> None:
    """Drop from the event files under `log_dir` every event logged after `step`: the run resumed
    from `step` logs those steps again, so each step is then shown once. With step 0 (a new
    training) no event file is kept. Only event files are touched, and the run folders they
    leave empty."""
    dropped, removed = 0, []
    for path in event_files(log_dir):
        records = read_events(path) if step else []
        kept = [(raw, event) for raw, event in records if event.step <= step]
        dropped += sum(len(event.summary.value) for _, event in records if event.step > step)
        if not any(event.summary.value for _, event in kept):
            path.unlink()  # nothing left to plot, or a new training
            removed.append(path)
        elif len(kept) < len(records) or path.stat().st_size != sum(len(r) + 16 for r, _ in kept):
            # (16 bytes frame each record: a cut last record is dropped as well)
            write_events(path, [raw for raw, _ in kept])
    for folder in {p.parent for p in removed} - {Path(log_dir)}:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if dropped:
        print(f"resume: TensorBoard: dropped {dropped} values logged after step {step} by the "
              f"killed run (the resumed run logs those steps again)", flush=True)
    if not step and removed:
        print(f"resume: TensorBoard: removed {len(removed)} event file(s) of an earlier training "
              f"from {log_dir}", flush=True)


def write_events(path: Path, records: list[bytes]) -> None:
    """Replace the event file `path` by these records (TFRecord framing, as TensorBoard writes)."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    with atomic_path(path) as tmp:
        writer = RecordWriter(open(tmp, "wb"))
        for raw in records:
            writer.write(raw)
        writer.close()


def tensorboard_history(log_dir: str | Path, relative_to: str | Path) -> dict[str, Any]:
    """What a finished training logged: each run's event file (a killed run's, then the one of
    the run that resumed it), relative to `relative_to`, and the steps it holds."""
    runs = []
    for path in event_files(log_dir):
        steps = [event.step for _, event in read_events(path) if event.summary.value]
        if steps:
            runs.append({"events": os.path.relpath(path, relative_to), "first_step": min(steps),
                         "last_step": max(steps)})
    return {"log_dir": str(log_dir), "runs": runs}


def write_tensorboard_history(log_dir: str | Path, output: str | Path) -> None:
    """`output` (JSON): the event files of the training that just finished, for its curves."""
    history = tensorboard_history(log_dir, Path(output).parent)
    if not history["runs"]:
        raise ValueError(f"{log_dir}: the training logged nothing to TensorBoard")
    write_json(output, history)


def history_files(history: Path) -> list[Path]:
    """The event files a training's history lists (relative to the history's folder)."""
    try:
        runs = json.loads(history.read_text(encoding="utf-8"))["runs"]
        files = [history.parent / run["events"] for run in runs]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{history}: not a TensorBoard history (train.py -tensorboard_history):"
                         f" {type(e).__name__}: {e}") from None
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (an event file that {history} lists)")
    return files


def read_scalars(files: list[Path]) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in files:
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in scalars.items()}
