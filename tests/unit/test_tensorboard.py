"""TensorBoard logs across resumes (vicuna.train.curves, vicuna.train.resume): events after the resumed step
dropped, each step once, a cut record dropped, training_curves.py reading its history."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from helpers import run_script, scalars

from vicuna import onmt_fixes
from vicuna.train import events

PROGRESS = ("progress/xent", "progress/ppl", "progress/lr")


def write_run(log_dir: Path, name: str, steps: range, valid_every: int = 200) -> Path:
    """One OpenNMT-py run's event file in log_dir/name/: progress values at `steps`, validation
    at each multiple of `valid_every`; closed, as a run that ended."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir / name))
    for step in steps:
        for tag in PROGRESS:
            writer.add_scalar(tag, step / 1000, step)
        if step % valid_every == 0:
            writer.add_scalar("valid/xent", step / 1000, step)
    writer.close()
    (path,) = (log_dir / name).glob("events.out.tfevents.*")
    return path




def test_events_after_the_resumed_step_are_dropped(tmp_path, capsys):
    killed = write_run(tmp_path, "Dec-01_10-00-00", range(20, 261, 20))  # killed after step 260
    (tmp_path / "notes.txt").write_text("mine")
    events.keep_events_until(tmp_path, 200)
    assert scalars(tmp_path) == {**{tag: list(range(20, 201, 20)) for tag in PROGRESS},
                                 "valid/xent": [200]}
    assert "dropped 9 values logged after step 200" in capsys.readouterr().out
    before = killed.read_bytes()
    events.keep_events_until(tmp_path, 200)  # nothing more to drop: the file is left alone
    assert killed.read_bytes() == before
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_resumed_run_continues_the_curves_each_step_once(tmp_path):
    write_run(tmp_path, "Dec-01_10-00-00", range(20, 261, 20))  # killed after its step 200 save
    events.keep_events_until(tmp_path, 200)
    time.sleep(1.1)  # a later run: a later start time in its file's name
    write_run(tmp_path, "Dec-01_10-05-00", range(220, 461, 20))  # resumed, killed after 400
    events.keep_events_until(tmp_path, 400)
    time.sleep(1.1)
    write_run(tmp_path, "Dec-01_10-09-00", range(420, 801, 20))  # resumed, finished
    assert scalars(tmp_path) == {**{tag: list(range(20, 801, 20)) for tag in PROGRESS},
                                 "valid/xent": [200, 400, 600, 800]}
    history = events.tensorboard_history(tmp_path, tmp_path)
    assert [(r["first_step"], r["last_step"]) for r in history["runs"]] == [
        (20, 200), (220, 400), (420, 800)]
    assert history["runs"][0]["events"].startswith("Dec-01_10-00-00/events.out.tfevents.")


def test_a_new_training_starts_without_the_old_curves(tmp_path, capsys):
    write_run(tmp_path, "Dec-01_10-00-00", range(20, 801, 20))
    write_run(tmp_path, "Dec-01_11-00-00", range(20, 101, 20))
    (tmp_path / "Dec-01_11-00-00" / "notes.txt").write_text("mine")
    events.keep_events_until(tmp_path, 0)
    assert events.event_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["Dec-01_11-00-00", "notes.txt"]
    assert "removed 2 event file(s) of an earlier training" in capsys.readouterr().out


def test_a_record_cut_by_the_kill_is_dropped(tmp_path):
    path = write_run(tmp_path, "run", range(20, 201, 20))
    whole = path.read_bytes()
    path.write_bytes(whole + whole[-30:-5])  # a record cut short, as a kill while writing leaves
    events.keep_events_until(tmp_path, 200)
    assert path.read_bytes() == whole
    assert scalars(tmp_path)["progress/xent"] == list(range(20, 201, 20))


def test_a_run_with_nothing_left_is_removed(tmp_path):
    write_run(tmp_path, "early", range(20, 101, 20))
    write_run(tmp_path, "late", range(220, 301, 20))  # all of it after the resumed step
    events.keep_events_until(tmp_path, 200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["early"]


def test_each_report_is_on_disk_when_it_returns(tmp_path):
    """With the writer still open: as a training that is killed just after its step checkpoint
    finds it (without the flush, the events may still wait in the writer's queue)."""
    from onmt.utils.report_manager import ReportMgr
    from onmt.utils.statistics import Statistics
    from torch.utils.tensorboard import SummaryWriter

    onmt_fixes.flush_tensorboard_at_each_report()
    writer = SummaryWriter(str(tmp_path))
    mgr = ReportMgr(20, tensorboard_writer=writer)
    for step in (20, 40):
        mgr.maybe_log_tensorboard(Statistics(loss=1.0, n_words=10, n_correct=5), "progress",
                                  0.001, None, step)
        assert scalars(tmp_path)["progress/xent"] == list(range(20, step + 1, 20))
    writer.close()


def test_training_curves_reads_the_files_its_history_lists(tmp_path):
    logs = tmp_path / "logs"
    write_run(logs, "killed", range(20, 201, 20))
    time.sleep(1.1)
    write_run(logs, "resumed", range(220, 401, 20))
    events.write_tensorboard_history(logs, logs / "history.json")
    history = json.loads((logs / "history.json").read_text())
    assert [run["first_step"] for run in history["runs"]] == [20, 220]
    out = tmp_path / "curves.png"
    done = run_script("training_curves.py", "--history", str(logs / "history.json"),
                      "--output", str(out))
    assert out.read_bytes()[:4] == b"\x89PNG" and "progress/xent" in done.stdout
    shutil.rmtree(logs / "resumed")
    gone = run_script("training_curves.py", "--history", str(logs / "history.json"),
                      "--output", str(tmp_path / "again.png"), check=False)
    last = gone.stderr.strip().splitlines()[-1]
    assert gone.returncode != 0 and last.startswith("error: ") and "resumed" in last
    assert "history.json" in last and not (tmp_path / "again.png").exists()
