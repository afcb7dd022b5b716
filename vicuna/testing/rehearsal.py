"""The 7B run rehearsed on this CPU: configs/llama7b-vicuna.yaml as users run it, plus one
override file that only shrinks it. Used by tests/integration/test_rehearsal.py (through the SLURM profile),
benchmarks/job_memory.py (locally, on bases of several sizes) and benchmarks/gpu_check.py; the
tests' fixtures copy the checkout with its `clone`.

What the override changes, and nothing else: where the two corpora and MMLU's data are downloaded
from (small files in the tutorial's flattened format and a small data.tar in Hendrycks' layout,
served over HTTP on 127.0.0.1, checksums given), the
training's size and device (a few steps, float32 on the CPU: there is no GPU here), and the
inference device and length. The base is a 7B-shaped LLaMA (dim 4096, 32 heads, FFN 11008, the
real 32,000-piece tokenizer) with fewer layers and random weights, in llama/7B/ as the README
says, so `base` is the 7B config's own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from vicuna import prompt
from vicuna.testing import random_base
from vicuna.tiny import synthetic

REPO = Path(__file__).resolve().parents[2]  # vicuna/testing/ -> the checkout
LLAMA_TOKENIZER = REPO.parent / "shared" / "fixtures" / "llama-tokenizer" / "tokenizer.model"
CONFIG = "configs/llama7b-vicuna.yaml"
OVERRIDE = "rehearsal.yaml"
RUN = "runs/llama7B"  # the 7B config's run folder (its model_name): the override keeps it


@dataclass(frozen=True)
class Base:
    """A base's rehearsal: its config of configs/ layered on the 7B run (none for LLaMA 7B),
    where that config puts the base and its tokenizer, and the shape random_base writes there."""
    shape: str  # random_base's name: PARAMS (Meta's layout) or HF_CONFIGS (Hugging Face's)
    model_dir: str
    tokenizer: str
    configs: tuple[str, ...] = ()
    run: str = RUN

    @property
    def hf(self) -> bool:
        return self.shape in random_base.HF_CONFIGS

    @property
    def configfiles(self) -> list[str]:
        return [CONFIG, *self.configs, OVERRIDE]


BASES = {
    "7B": Base("7B", "llama/7B", "llama/tokenizer.model"),
    "llama2-7B": Base("llama2-7B", "llama-2/llama-2-7b", "llama-2/tokenizer.model",
                      ("configs/llama2-7b.yaml",), "runs/llama2-7B"),
    "mistral-7B": Base("mistral-7B", "models/Mistral-7B-v0.1",
                       "models/Mistral-7B-v0.1/tokenizer.model", ("configs/mistral-7b.yaml",),
                       "runs/mistral-7B"),
}

# The shrinking; each corpus's url and sha256 are added by `override`.
SHRINK = {
    "train": {
        "precision": "fp32",  # no GPU: fp16 training needs one
        "optim": "adam", "batch_size": 256, "valid_batch_size": 256, "accum_count": 1,
        "bucket_size": 64, "num_workers": 0, "warmup_steps": 1, "train_steps": 4,
        "save_checkpoint_steps": 2, "valid_steps": 4, "report_every": 1,
    },
    "inference": {"device": "cpu", "precision": "fp32", "cpu_threads": 2, "max_length": 8},
}
HEADER = """\
# Shrinks configs/llama7b-vicuna.yaml to rehearse it on a CPU: the 7B-shaped base in llama/7B
# has fewer layers; the corpora are small copies served on 127.0.0.1.
"""


def clone(dest: Path) -> Path:
    """The project's files (tracked, and new ones git does not ignore) copied to `dest`, as a
    fresh clone has them; mtimes kept."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
        capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def flattened_corpora(out: Path, n: int = 24) -> dict[str, Path]:
    """alpaca_clean.txt and sharegpt.txt in the tutorial's format (one example a line,
    newlines as ｟newline｠), short enough for a few training steps."""
    sets = synthetic.generate(seed=11, n_alpaca=n, n_sharegpt=n, n_heldout=1, n_pretrain=1)
    alpaca = [prompt.to_line(prompt.alpaca(**r)) for r in sets["alpaca"]]
    sharegpt = []
    for record in sets["sharegpt"]:
        turns = [t["value"] for t in record["conversations"]]
        sharegpt.append(prompt.to_line(prompt.conversation(list(zip(turns[::2], turns[1::2],
                                                                     strict=True)))))
    out.mkdir(parents=True, exist_ok=True)
    paths = {"alpaca_clean": out / "alpaca_clean.txt", "sharegpt": out / "sharegpt.txt"}
    for name, lines in (("alpaca_clean", alpaca), ("sharegpt", sharegpt)):
        paths[name].write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    paths["mmlu"] = mmlu_archive(out / "data.tar")
    return paths


def mmlu_archive(path: Path, n_test: int = 3) -> Path:
    """A data.tar in Hendrycks' layout (data/dev/<subject>_dev.csv, data/test/...): two of the
    synthetic subjects, 5 dev rows and `n_test` questions each."""
    sets = synthetic.mmlu_sets(seed=11, n_dev=5, n_test=n_test)
    with tarfile.open(path, "w") as tar:
        for subject in ("first_word", "word_counting"):
            for split, rows in zip(("dev", "test"), sets[subject], strict=True):
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows(rows)
                data = text.getvalue().encode("utf-8")
                info = tarfile.TarInfo(f"data/{split}/{subject}_{split}.csv")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    return path


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """An HTTP server for `directory` on 127.0.0.1 (a free port); yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def override(base_url: str, corpora: dict[str, Path], heldout: bool = False,
             changes: dict | None = None) -> str:
    """The override file's text: SHRINK, the corpora's sources, then `changes` (section by
    section); with `heldout`, the alpaca copy is also a held-out corpus, so that `evaluate`
    loads and scores both models (the memory benchmark measures that)."""
    def source(name: str) -> dict:
        sha = hashlib.sha256(corpora[name].read_bytes()).hexdigest()
        if name == "mmlu":
            return {"data": f"{base_url}/{corpora[name].name}", "sha256": sha}
        return {"url": f"{base_url}/{corpora[name].name}", "sha256": sha}

    data: dict = {"corpora": {name: source(name) for name in ("alpaca_clean", "sharegpt")}}
    if heldout:
        data["heldout"] = {"alpaca": source("alpaca_clean")}
    sections = {"data": data, **{k: dict(v) for k, v in SHRINK.items()}}
    if "mmlu" in corpora:  # the 7B config's Hendrycks URL, replaced by the local copy
        sections["benchmarks"] = {"mmlu": source("mmlu") | {"batch_size": 4}}
    for section, values in (changes or {}).items():
        sections.setdefault(section, {}).update(values)
    return HEADER + yaml.safe_dump(sections, sort_keys=False)


def prepare(workdir: Path, base_url: str, corpora: dict[str, Path], n_layers: int = 1,
            heldout: bool = False, changes: dict | None = None, base: str = "7B") -> int:
    """A clone in `workdir` holding the base's random stand-in of the real width where its
    config looks for it (LLaMA 7B: llama/7B), the real LLaMA tokenizer, and the override file;
    returns the base checkpoint's size in bytes."""
    clone(workdir)
    spec = BASES[base]
    if spec.hf:
        size = random_base.write_random_hf(workdir / spec.model_dir, spec.shape, n_layers=n_layers)
    else:
        size = random_base.write_random(workdir / spec.model_dir, spec.shape, n_layers=n_layers)
    shutil.copy(LLAMA_TOKENIZER, workdir / spec.tokenizer)
    (workdir / OVERRIDE).write_text(override(base_url, corpora, heldout, changes))
    return size


def run_locally(root: Path, work: Path, n_examples: int = 24, env: dict[str, str] | None = None,
                targets: tuple[str, ...] = ("all",),
                **prepare_args: Any) -> subprocess.CompletedProcess:
    """The rehearsal through profiles/local in a new clone `work`, its corpora served from
    root/www for the run (benchmarks/job_memory.py and gpu_check.py); `env`: Snakemake's
    environment (this one's by default); `targets`: what Snakemake makes (`all`);
    `prepare_args` go to `prepare` (n_layers, heldout, changes)."""
    corpora = flattened_corpora(root / "www", n=n_examples)
    work.mkdir()
    with serve(root / "www") as url:
        prepare(work, url, corpora, **prepare_args)
        cmd = [str(REPO / ".venv" / "bin" / "snakemake"), "--profile", "profiles/local",
               "--configfile", CONFIG, OVERRIDE, "--", *targets]
        return subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)


def job_benchmarks(run_dir: Path) -> dict[str, dict[str, float]]:
    """Each job's Snakemake benchmark file (<run_dir>/benchmarks/<job>.tsv), by job: seconds
    (`s`), peak resident memory in MB (`max_rss`), ..."""
    jobs = {}
    for bench in sorted((run_dir / "benchmarks").glob("*.tsv")):
        with open(bench, encoding="utf-8") as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        jobs[bench.stem] = {key: float(value) for key, value in row.items()
                            if value not in ("", "NA") and key != "h:m:s"}
    return jobs
