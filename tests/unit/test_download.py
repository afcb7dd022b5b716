"""vicuna.data.download and scripts/download.py against a real HTTP server on 127.0.0.1 (http_server.py):
resumes, retries, validators, checksums, and messages that name the cause."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import REPO
from http_server import MODIFIED, NEW_PAYLOAD, NEW_SHA, PAYLOAD, PAYLOAD_SHA, etag_of, url

from vicuna.data.download import DownloadError, download


def fetch(source: str, output: Path, **kwargs) -> dict:
    return download(source, output, backoff=0.01, progress=False, **kwargs)


def part_of(output: Path) -> Path:
    return output.with_name(output.name + ".part")


def test_resumes_after_connection_cut_halfway(server, tmp_path):
    server.plan = ["cut"]
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    # The resume starts where the kept bytes end: at most half (urllib3 drops the last
    # partial 1 MiB read when the body ends early), and never from scratch.
    kept = manifest["resumed_from"]
    assert 0 < kept <= len(PAYLOAD) // 2
    assert [s["range"] for s in server.seen] == [None, f"bytes={kept}-"]
    assert out.read_bytes() == PAYLOAD
    assert manifest["sha256"] == PAYLOAD_SHA
    assert manifest["bytes"] == len(PAYLOAD)
    assert manifest["output"] == str(out) and manifest["source"] == url(server)
    assert not part_of(out).exists()


def test_short_206_answers_are_continued(server, tmp_path):
    server.plan = ["small-206"] * 10
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA, retries=0)
    starts = [None, "bytes=700000-", "bytes=1400000-", "bytes=2100000-"]
    assert [s["range"] for s in server.seen] == starts
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 2_100_000


def test_retries_5xx_then_succeeds(server, tmp_path):
    server.plan = [503, 503]
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert len(server.seen) == 3
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 0


def test_gives_up_after_retries(server, tmp_path):
    server.plan = [500] * 10
    out = tmp_path / "model.bin"
    with pytest.raises(DownloadError, match="giving up after 2 retries: HTTP 500"):
        fetch(url(server), out, retries=2)
    assert len(server.seen) == 3
    assert not out.exists()


def test_retries_read_timeout(server, tmp_path):
    server.plan = ["stall"]
    out = tmp_path / "model.bin"
    fetch(url(server), out, sha256=PAYLOAD_SHA, timeout=0.2)
    assert len(server.seen) == 2
    assert out.read_bytes() == PAYLOAD


def test_wrong_bytes_fail_sha256_and_leave_nothing(server, tmp_path):
    server.files["/model.bin"] = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])
    observed = hashlib.sha256(server.files["/model.bin"]).hexdigest()
    out = tmp_path / "model.bin"
    with pytest.raises(DownloadError) as err:
        fetch(url(server), out, sha256=PAYLOAD_SHA)
    message = str(err.value)
    assert "sha256" in message and str(out) in message and url(server) in message
    assert PAYLOAD_SHA in message and observed in message
    assert "\n" not in message
    assert not out.exists()
    assert not part_of(out).exists()


def test_404_fails_at_once(server, tmp_path):
    out = tmp_path / "model.bin"
    missing = url(server, "/missing.bin")
    with pytest.raises(DownloadError) as err:
        fetch(missing, out)
    assert missing in str(err.value) and "404" in str(err.value)
    assert len(server.seen) == 1
    assert not out.exists()
    assert not part_of(out).exists()


def test_size_mismatch_is_reported(server, tmp_path):
    out = tmp_path / "model.bin"
    with pytest.raises(DownloadError, match=f"{len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        fetch(url(server), out, size=len(PAYLOAD) + 1)
    assert not out.exists()


def state_of(output: Path) -> Path:
    return output.with_name(output.name + ".part.json")


def leave_part(output: Path, data: bytes, server: ThreadingHTTPServer, validator: str) -> None:
    """A .part file as an earlier run leaves it: the bytes and the validator kept beside them."""
    part_of(output).write_bytes(data)
    state = {"url": url(server), "validator": validator, "etag": validator,
             "last_modified": None, "bytes": len(data)}
    state_of(output).write_text(json.dumps(state))


def test_part_without_kept_validator_starts_over(server, tmp_path, capsys):
    out = tmp_path / "model.bin"
    part_of(out).write_bytes(PAYLOAD[:1000])  # left by an older version: nothing to check it by
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(None, None)]
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 0
    assert "no ETag or Last-Modified kept" in capsys.readouterr().err


def test_stale_part_restarts_when_server_ignores_range(server, tmp_path, capsys):
    out = tmp_path / "model.bin"
    leave_part(out, b"junk from another file" * 100, server, etag_of(PAYLOAD))
    server.plan = ["ignore-range"]
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert server.seen[0]["range"] == f"bytes={22 * 100}-"
    assert len(server.seen) == 1
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == 0
    assert "starting over" in capsys.readouterr().err


def test_complete_part_from_earlier_run_is_kept_on_416(server, tmp_path):
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD, server, etag_of(PAYLOAD))
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [s["range"] for s in server.seen] == [f"bytes={len(PAYLOAD)}-"]
    assert out.read_bytes() == PAYLOAD
    assert manifest["resumed_from"] == len(PAYLOAD)
    assert manifest["etag"] == etag_of(PAYLOAD)
    assert not state_of(out).exists()


def test_partial_part_from_earlier_run_is_resumed_with_if_range(server, tmp_path):
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD[:1000], server, etag_of(PAYLOAD))
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [("bytes=1000-", etag_of(PAYLOAD))]
    assert manifest["sha256"] == PAYLOAD_SHA and manifest["resumed_from"] == 1000
    assert not part_of(out).exists() and not state_of(out).exists()


def test_part_of_another_url_starts_over(server, tmp_path):
    out = tmp_path / "model.bin"
    leave_part(out, PAYLOAD[:1000], server, etag_of(PAYLOAD))
    server.files["/other.bin"] = PAYLOAD
    fetch(url(server, "/other.bin"), out, sha256=PAYLOAD_SHA)
    assert [s["range"] for s in server.seen] == [None]
    assert out.read_bytes() == PAYLOAD


def interrupted_run(server: ThreadingHTTPServer, out: Path) -> None:
    """A first run that ends with half the file in .part (the server hangs up, then fails)."""
    server.plan = ["cut", 500]
    with pytest.raises(DownloadError, match="giving up after 0 retries"):
        fetch(url(server), out, retries=0)
    assert 0 < part_of(out).stat().st_size < len(PAYLOAD)
    server.plan, server.seen = [], []


@pytest.mark.parametrize("validators", [{"etag", "last-modified"}, {"weak-etag", "last-modified"}],
                         ids=["etag", "last-modified"])
def test_file_changed_between_runs_is_fetched_whole(server, tmp_path, capsys, validators):
    server.validators = validators
    out = tmp_path / "model.bin"
    interrupted_run(server, out)
    kept = json.loads(state_of(out).read_text())
    sent = etag_of(PAYLOAD) if "etag" in validators else MODIFIED
    assert kept["validator"] == sent and kept["url"] == url(server)
    assert kept["bytes"] == part_of(out).stat().st_size
    server.files["/model.bin"] = NEW_PAYLOAD  # changed on the server meanwhile
    server.modified["/model.bin"] = "Thu, 22 Oct 2015 07:28:00 GMT"
    manifest = fetch(url(server), out, sha256=NEW_SHA)
    offset = kept["bytes"]
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(f"bytes={offset}-", sent)]
    assert out.read_bytes() == NEW_PAYLOAD  # whole, never the old start joined to the new end
    assert manifest["resumed_from"] == 0
    assert "changed since" in capsys.readouterr().err


def test_unchanged_file_is_resumed_in_a_later_run(server, tmp_path):
    out = tmp_path / "model.bin"
    interrupted_run(server, out)
    offset = part_of(out).stat().st_size
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(f"bytes={offset}-", etag_of(PAYLOAD))]
    assert manifest["resumed_from"] == offset and out.read_bytes() == PAYLOAD


def test_server_ignoring_if_range_is_caught_by_its_etag(server, tmp_path, capsys):
    out = tmp_path / "model.bin"
    interrupted_run(server, out)
    server.files["/model.bin"] = NEW_PAYLOAD
    server.plan = ["ignore-if-range"]  # answers 206 with the new file's bytes and ETag
    manifest = fetch(url(server), out, sha256=NEW_SHA)
    assert [s["range"] for s in server.seen][1:] == [None]
    assert out.read_bytes() == NEW_PAYLOAD and manifest["resumed_from"] == 0
    assert "part of another file" in capsys.readouterr().err


def test_server_without_validators_starts_over_in_a_later_run(server, tmp_path):
    server.validators = set()
    out = tmp_path / "model.bin"
    server.plan = ["cut"]
    with pytest.raises(DownloadError, match="giving up after 0 retries") as err:
        fetch(url(server), out, retries=0)
    assert "kept" not in str(err.value)  # nothing a later run could resume
    assert not state_of(out).exists()
    part_of(out).write_bytes(PAYLOAD[:1000])  # as if killed: a .part file with nothing beside it
    server.files["/model.bin"], server.seen = NEW_PAYLOAD, []
    manifest = fetch(url(server), out, sha256=NEW_SHA)
    assert [(s["range"], s["if_range"]) for s in server.seen] == [(None, None)]
    assert out.read_bytes() == NEW_PAYLOAD and manifest["resumed_from"] == 0


def test_server_without_validators_never_gets_a_bare_range(server, tmp_path):
    server.validators = set()
    server.plan = ["cut", "cut"]
    out = tmp_path / "model.bin"
    manifest = fetch(url(server), out, sha256=PAYLOAD_SHA, retries=2)
    assert [s["range"] for s in server.seen] == [None, None, None]
    assert out.read_bytes() == PAYLOAD and manifest["etag"] is None


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-url"])
def test_local_source_is_copied_with_checksum(tmp_path, as_uri):
    src = tmp_path / "src dir" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    out = tmp_path / "out" / "weights.bin"
    source = src.as_uri() if as_uri else str(src)
    manifest = fetch(source, out, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    assert out.read_bytes() == PAYLOAD
    assert manifest["bytes"] == len(PAYLOAD) and manifest["sha256"] == PAYLOAD_SHA
    assert not part_of(out).exists()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(source, tmp_path / "again.bin", sha256="0" * 64)
    assert not (tmp_path / "again.bin").exists()
    assert not part_of(tmp_path / "again.bin").exists()


def test_empty_file(server, tmp_path):
    server.files["/empty.bin"] = b""
    out = tmp_path / "empty.bin"
    manifest = fetch(url(server, "/empty.bin"), out, sha256=hashlib.sha256(b"").hexdigest())
    assert out.read_bytes() == b"" and manifest["bytes"] == 0


def test_malformed_sha256_fails_before_any_request(server, tmp_path):
    with pytest.raises(DownloadError, match="not 64 hex digits"):
        fetch(url(server), tmp_path / "model.bin", sha256="abc")
    assert server.seen == []


def test_missing_local_source(tmp_path):
    with pytest.raises(DownloadError, match="no such file"):
        fetch(str(tmp_path / "absent.bin"), tmp_path / "out.bin")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # cwd outside the repo: the script must find `vicuna` on its own.
    cmd = [sys.executable, str(REPO / "scripts" / "download.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_success_writes_manifest(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "meta" / "m.json"
    done = run_cli(
        "--url", url(server), "--output", str(out), "--sha256", PAYLOAD_SHA,
        "--size", str(len(PAYLOAD)), "--manifest", str(manifest), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(manifest.read_text())
    assert data["sha256"] == PAYLOAD_SHA and data["bytes"] == len(PAYLOAD)
    assert data["output"] == str(out)
    assert out.read_bytes() == PAYLOAD


def test_cli_404_exits_1(server, tmp_path):
    missing = url(server, "/missing.bin")
    manifest = tmp_path / "m.json"
    done = run_cli(
        "--url", missing, "--output", str(tmp_path / "m.bin"), "--manifest", str(manifest),
        "--retries", "3", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and missing in done.stderr and "404" in done.stderr
    assert len(server.seen) == 1
    assert not manifest.exists()


def cli(server: ThreadingHTTPServer, out: Path, manifest: Path, *more: str) -> list[str]:
    return ["--url", url(server), "--output", str(out), "--manifest", str(manifest), *more]


def test_cli_killed_then_file_changed_gives_the_new_file_whole(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    server.plan = ["hang"]  # half the body, then nothing: the job is killed meanwhile
    cmd = [sys.executable, str(REPO / "scripts" / "download.py"), *cli(server, out, manifest)]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (part_of(out).exists() and part_of(out).stat().st_size >= 1 << 20):
            assert first.poll() is None and time.monotonic() < deadline, "no bytes arrived"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)  # as a lost node: no clean-up at all
        first.wait()
    assert not out.exists() and not manifest.exists()
    assert json.loads(state_of(out).read_text())["validator"] == etag_of(PAYLOAD)
    server.files["/model.bin"] = NEW_PAYLOAD
    done = run_cli(*cli(server, out, manifest, "--sha256", NEW_SHA), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert server.seen[1]["if_range"] == etag_of(PAYLOAD) and server.seen[1]["range"]
    assert out.read_bytes() == NEW_PAYLOAD
    assert "changed since" in done.stderr
    recorded = json.loads(manifest.read_text())
    assert recorded["sha256"] == NEW_SHA and recorded["etag"] == etag_of(NEW_PAYLOAD)
    assert not part_of(out).exists() and not state_of(out).exists()


def test_cli_manifest_records_the_source(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    done = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    recorded = json.loads(manifest.read_text())
    assert recorded["source"] == url(server) and recorded["bytes"] == len(PAYLOAD)
    assert recorded["sha256"] == PAYLOAD_SHA and recorded["etag"] == etag_of(PAYLOAD)
    assert recorded["last_modified"] == MODIFIED
    assert recorded["fetched_at"].endswith("+00:00")


def test_cli_second_run_checks_the_output_against_its_manifest(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    assert run_cli(*cli(server, out, manifest), cwd=tmp_path).returncode == 0
    again = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "matches its manifest" in again.stderr
    assert len(server.seen) == 1  # checked, not fetched again


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_cli_output_that_differs_from_its_manifest_fails(server, tmp_path, damage):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    assert run_cli(*cli(server, out, manifest), cwd=tmp_path).returncode == 0
    data = bytearray(PAYLOAD)
    if damage == "flip":
        data[123] ^= 0xFF  # same size: only the sha256 tells
    else:
        del data[-10:]
    out.write_bytes(bytes(data))
    again = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert again.returncode == 1
    err = again.stderr
    assert err.startswith(f"error: {out}: ") and err.count("\n") == 1
    assert ("sha256" if damage == "flip" else "bytes") in err and str(manifest) in err
    assert len(server.seen) == 1
    assert out.read_bytes() == bytes(data)  # left for the user to look at, not replaced


def test_cli_new_source_is_fetched_again(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    assert run_cli(*cli(server, out, manifest), cwd=tmp_path).returncode == 0
    server.files["/new.bin"] = NEW_PAYLOAD
    args = ["--url", url(server, "/new.bin"), "--output", str(out), "--manifest", str(manifest)]
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == NEW_PAYLOAD
    assert json.loads(manifest.read_text())["source"] == url(server, "/new.bin")


def test_cli_unreadable_manifest_fails(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    out.write_bytes(PAYLOAD)
    manifest.write_text("{not json")
    done = run_cli(*cli(server, out, manifest), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {manifest}: ") and done.stderr.count("\n") == 1
    assert server.seen == []


@pytest.mark.parametrize(
    "source, message",
    [
        ("ftp://127.0.0.1/model.bin", "unsupported URL scheme"),
        ("http:///model.bin", "InvalidURL"),
        ("http://[::1/model.bin", "not a valid URL"),
        ("no/such/file.bin", "no such file"),
    ],
    ids=["scheme", "no-host", "malformed", "missing-path"],
)
def test_cli_bad_source_is_one_line(tmp_path, source, message):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    done = run_cli("--url", source, "--output", str(out), "--manifest", str(manifest), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert not out.exists() and not manifest.exists() and not part_of(out).exists()


def test_cli_unwritable_output_is_one_line(server, tmp_path):
    out = tmp_path / "a-file" / "m.bin"  # its folder is a file
    (tmp_path / "a-file").write_text("")
    done = run_cli("--url", url(server), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {out}: ") and done.stderr.count("\n") == 1, done.stderr


def test_cli_checksum_mismatch_leaves_nothing(server, tmp_path):
    out, manifest = tmp_path / "m.bin", tmp_path / "m.json"
    done = run_cli(*cli(server, out, manifest, "--sha256", NEW_SHA), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {out}: sha256 mismatch") and done.stderr.count("\n") == 1
    assert not out.exists() and not manifest.exists()
    assert not part_of(out).exists() and not state_of(out).exists()


def test_script_runs_as_a_command():
    script = REPO / "scripts" / "download.py"
    assert script.read_text().startswith("#!/usr/bin/env python\n")
    assert os.access(script, os.X_OK)


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
