"""Messages that were right but unclear, each now saying the cause and what to do: a source with
both json and url, a bad weight, a missing base.model_dir (config errors through `snakemake -n`
at parse time, as test_config.py does), an output directory that --force would not replace
either, and a server that ignores Range."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import REPO, clone, edited_config, run_script, snakemake
from test_config import dry_run
from test_download import (  # noqa: F401 (server: the fixture, a real HTTP server)
    PAYLOAD,
    PAYLOAD_SHA,
    etag_of,
    fetch,
    leave_part,
    server,
    url,
)

from vicuna import files

# --- Config errors, at parse time ----------------------------------------------------------------

def parse_error(tmp_path, edit) -> str:
    """`snakemake -n all` with the edited default config: fails before any job is planned."""
    workdir, before, result = dry_run(tmp_path, edited_config(tmp_path, edit))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Building DAG" not in output  # no job was even planned
    assert sorted(p.name for p in workdir.iterdir() if p.name != ".snakemake") == before
    return output


@pytest.mark.parametrize("section", ["corpora", "valid"])
def test_a_source_with_json_and_url_says_give_one(tmp_path, section):
    def edit(c):
        source = c["data"]["corpora"]["alpaca_clean"] if section == "corpora" else c["data"]["valid"]
        source["url"] = "https://example.org/alpaca.txt"

    output = parse_error(tmp_path, edit)
    where = "data.corpora.alpaca_clean" if section == "corpora" else "data.valid"
    assert f"{where}: give json+format or url, not both" in output
    assert "is valid under each of" not in output and "was unexpected" not in output


def test_a_source_with_half_of_json_format_names_the_missing_key(tmp_path):
    output = parse_error(tmp_path, lambda c: c["data"]["corpora"]["sharegpt"].pop("format"))
    assert "data.corpora.sharegpt: give json+format or url ('format' is missing)" in output
    assert "was unexpected" not in output


def test_a_negative_weight_is_named_as_such_and_nothing_else(tmp_path):
    output = parse_error(tmp_path, lambda c: c["data"]["corpora"]["alpaca_clean"].update(weight=-1))
    assert "data.corpora.alpaca_clean.weight: -1 is less than the minimum of 1" in output
    assert "was unexpected" not in output


def test_a_real_typo_beside_a_bad_weight_is_still_named(tmp_path):
    def edit(c):
        c["data"]["corpora"]["alpaca_clean"].update(weight=-1, sha265="0" * 64)

    output = parse_error(tmp_path, edit)
    assert "('sha265' was unexpected)" in output and "'weight' was unexpected" not in output
    assert "-1 is less than the minimum of 1" in output


def without_synthetic(c):
    """A config of one's own, not the tiny default: no `synthetic`, base in llama/7B."""
    c.pop("synthetic")
    c["base"] = {"model_dir": "llama/7B", "tokenizer_model": "llama/tokenizer.model"}


def test_a_missing_base_model_dir_is_named_with_what_goes_there(tmp_path):
    """Said at parse time; the run then stops on Snakemake's own missing input files (so
    --unlock, --delete-all-output and a dry run still work without the weights)."""
    workdir, _, result = dry_run(tmp_path, edited_config(tmp_path, without_synthetic))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("base.model_dir: llama/7B does not exist: put the foundation model "
                        "there (Meta's params.json + consolidated.*.pth, or a Hugging Face "
                        "directory: config.json + *.safetensors or pytorch_model*.bin), or "
                        "point base.model_dir at it") == 1
    assert "MissingInputException" in output and "llama/7B/params.json" in output


def clone_with(tmp_path, configfile):
    workdir = clone(tmp_path / "work")
    shutil.copy(configfile, workdir / "config.yaml")
    return workdir


def test_an_existing_base_model_dir_passes_the_check(tmp_path):
    workdir = clone_with(tmp_path, edited_config(tmp_path, without_synthetic))
    (workdir / "llama" / "7B").mkdir(parents=True)
    result = snakemake(workdir, "-n", "all", check=False)
    assert "base.model_dir" not in result.stdout + result.stderr
    assert "Building DAG" in result.stdout + result.stderr  # parsed; fails later, on inputs


def test_the_tiny_default_says_once_that_pretraining_builds_its_base(tmp_path):
    workdir = clone_with(tmp_path, REPO / "config.yaml")
    result = snakemake(workdir, "-n", "all")
    output = result.stdout + result.stderr
    note = ("base.model_dir synthetic/llama/tiny does not exist yet: pretrain_base will build "
            "the tiny base there")
    assert output.count(note) == 1
    assert "pretrain_base" in output.split(note)[-1]  # and it is planned
    (workdir / "synthetic/llama/tiny").mkdir(parents=True)  # once it is there: not a word
    again = snakemake(workdir, "-n", "all")
    assert "does not exist yet" not in again.stdout + again.stderr


# --- An output directory that --force would not replace -------------------------------------------

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


# --- A server that ignores Range -----------------------------------------------------------------

def test_a_server_that_ignores_range_is_named_as_such(server, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD[:1000], server, etag_of(PAYLOAD))  # an earlier run's, same file
    server.plan = ["ignore-range"]  # 200 and the whole (unchanged) file, to a ranged request
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [s["range"] for s in server.seen] == ["bytes=1000-"]
    assert out.read_bytes() == PAYLOAD and manifest["resumed_from"] == 0
    err = capsys.readouterr().err
    assert f"{url(server)}: the server ignores Range: starting over" in err
    assert "changed since" not in err


def test_a_changed_file_keeps_its_message(server, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD[:1000], server, etag_of(b"the file as it was"))
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)  # If-Range fails: 200, new ETag
    assert manifest["resumed_from"] == 0 and out.read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert f"{url(server)} changed since" in err
    assert f'ETag {etag_of(b"the file as it was")}, now {etag_of(PAYLOAD)}' in err
    assert "ignores Range" not in err


def test_a_whole_file_with_nothing_to_compare_says_both_causes(server, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD[:1000], server, etag_of(PAYLOAD))
    server.validators = set()  # the answer carries no ETag or Last-Modified
    server.plan = ["ignore-range"]
    fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert "(it ignores Range, or the file changed): starting over" in capsys.readouterr().err
