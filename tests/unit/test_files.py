"""vicuna.files: outputs written whole or not at all, and --force offered only where it
replaces what the tool itself made."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from helpers import REPO, env, listing, run, run_script

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


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: root ignores them unless it gives
    up CAP_DAC_OVERRIDE (setpriv: for the command it runs only)."""
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 \
        else []


def test_a_write_into_a_read_only_folder_names_the_output_and_leaves_nothing(tmp_path):
    """flatten_dataset.py into a folder it may not write: one line naming the output the user
    asked for and the cause, not the temporary file; nothing left in the folder."""
    (tmp_path / "in.json").write_text(json.dumps([{"instruction": "i", "output": "o"}]))
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    outputs.chmod(0o555)
    out = outputs / "corpus.txt"
    try:
        result = run([*unprivileged(), sys.executable, str(REPO / "scripts" / "flatten_dataset.py"),
                      "--format", "alpaca", str(tmp_path / "in.json"), str(out)], env=env())
    finally:
        outputs.chmod(0o755)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"error: {out}: cannot write it: Permission denied (its folder {outputs} "
                    f"is not writable)"), result.stderr
    assert ".tmp" not in result.stderr
    assert listing(outputs) == []


def test_a_failed_write_inside_an_output_directory_names_the_output(tmp_path):
    """A file the write makes inside an output directory: named under the output's path."""
    out = tmp_path / "release"
    with pytest.raises(IsADirectoryError) as e, files.atomic_path(out) as tmp:
        (tmp / "model.bin").mkdir(parents=True)
        open(tmp / "model.bin", "w")  # a real failing open, inside the temporary directory
    assert str(e.value) == f"{out}: cannot write it: Is a directory (writing {out}/model.bin)"
    assert listing(tmp_path) == []
    with pytest.raises(FileNotFoundError) as e, files.atomic_path(tmp_path / "x.txt"):
        open(tmp_path / "missing-input.txt")  # an input's error is left as it is
    assert e.value.filename == str(tmp_path / "missing-input.txt")
