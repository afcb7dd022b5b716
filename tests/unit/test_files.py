"""vicuna.files: outputs written whole or not at all, and --force offered only where it
replaces what the tool itself made."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import listing, run_script

from vicuna import files


def test_atomic_path_kinds(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("old")
    files.write_text(text, "new")  # its own kind: replaced
    assert text.read_text() == "new"
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\x00\x01binary")
    with pytest.raises(FileExistsError, match=f"{binary}: exists"):
        files.write_text(binary, "new")
    files.write_text(binary, "new", force=True)
    assert binary.read_text() == "new"
    empty = tmp_path / "empty"
    empty.mkdir()
    files.write_text(empty, "fine")  # an empty directory holds nothing to lose
    assert empty.read_text() == "fine"
    link_target = tmp_path / "target"
    link_target.mkdir()
    (link_target / "keep").write_text("keep")
    (tmp_path / "link").symlink_to(link_target)
    files.write_text(tmp_path / "link", "x", force=True)  # replaces the link, not its target
    assert (link_target / "keep").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "empty", "link", "target"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), files.atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert listing(tmp_path) == []


def test_a_directory_of_other_files_is_not_offered_to_force(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps([{"instruction": "i", "output": "o"}]))
    out = tmp_path / "corpus.txt"
    out.mkdir()
    (out / "precious.txt").write_text("my notes")
    args = ["--format", "alpaca", str(tmp_path / "in.json"), str(out)]
    refused = run_script("flatten_dataset.py", *args, check=False)
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode != 0
    assert last == (f"error: {out}: is a directory holding files this tool does not write "
                    f"(precious.txt); move them away or choose another output (--force never "
                    f"deletes them)")
    assert "pass --force" not in last
    forced = run_script("flatten_dataset.py", *args, "--force", check=False)  # it would not help
    assert forced.returncode != 0 and "even with --force" in forced.stderr
    assert (out / "precious.txt").read_text() == "my notes"
    shutil.move(out / "precious.txt", tmp_path / "precious.txt")  # what the message says
    run_script("flatten_dataset.py", *args)
    assert out.is_file() and (tmp_path / "precious.txt").read_text() == "my notes"


def test_force_is_offered_where_it_works(tmp_path):
    release = tmp_path / "ct2"  # an earlier CTranslate2 release: this tool's own kind
    release.mkdir()
    (release / "model.bin").write_bytes(b"\0")
    (release / "config.json").write_text("{}")
    with pytest.raises(FileExistsError) as e:
        files.check_output(release, own=files.ct2_model_dir)
    assert str(e.value) == (f"{release}: is a directory holding an earlier output of this tool; "
                            f"choose another output, or pass --force to replace it")
    folders = tmp_path / "folders"
    (folders / "empty").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="empty folders only; choose another output, or "
                                              "pass --force to replace it"):
        files.check_output(folders, own=files.text_file)
    files.write_text(folders, "replaced", force=True)
    assert folders.read_text() == "replaced"
