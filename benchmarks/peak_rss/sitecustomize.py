"""The exact memory peak of every Python process a workflow job starts, for
benchmarks/job_memory.py. Snakemake's benchmark samples a job's memory every 0.5 s (every 30 s
after its first 15 s), so a job of a few seconds can end between samples, its peak unseen. With
this folder on PYTHONPATH and VICUNA_PEAK_RSS naming a file, each process appends one JSON line
at exit: the file its stderr goes to (a rule's `log:`), its argv, its high-water mark (VmHWM:
its own memory's, where getrusage's ru_maxrss carries over a parent's at exec when a big
process starts the child directly). Without VICUNA_PEAK_RSS it does nothing."""

import os

if os.environ.get("VICUNA_PEAK_RSS"):
    import atexit
    import json
    import sys

    def _high_water_mb() -> float:
        with open("/proc/self/status", encoding="ascii") as status:
            kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        return int(kb) / 1024

    def _record(path: str = os.environ["VICUNA_PEAK_RSS"]) -> None:
        try:
            stderr = os.readlink("/proc/self/fd/2")
        except OSError:
            stderr = ""
        line = json.dumps({"stderr": stderr, "argv": sys.argv, "max_rss_mb": _high_water_mb()})
        # one short O_APPEND write: lines of processes that end together do not interleave
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    atexit.register(_record)
