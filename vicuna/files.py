"""Reading text files line by line (`iter_lines`), and writing outputs so that a killed job
never leaves something that looks complete, and a tool never destroys what it did not make.

An output path that already exists is replaced without asking only when it is the tool's own
kind of file (`own`, a cheap look at its first bytes), or an empty directory (nothing is lost).
Anything else needs `force`, and even then a non-empty directory is replaced only when it holds
the tool's own kind (`own`) or nothing but files the new output writes again: a mistyped
`--output ~` with --force must not delete a home directory.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Recognise = Callable[[Path], bool]


def any_file(path: Path) -> bool:
    return path.is_file()


def text_file(path: Path) -> bool:
    """UTF-8 text without NUL bytes in its first 8 KiB: a text tool's own kind."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(8192)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # a character cut at the 8 KiB boundary is still text
            return False
    return b"\0" not in head


def png_file(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def torch_zip(path: Path) -> bool:
    """A file torch.save wrote (a zip archive holding data.pkl); reads only the zip directory."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("/data.pkl") or name == "data.pkl" for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


# The one-line errors of a checkpoint file that cannot be read, the same from every reader
# (vicuna.weights.checkpoint.load, the converter's vicuna.weights.lazy_tensors).
EMPTY_CHECKPOINT = "empty file, not a checkpoint (an interrupted copy?)"
NOT_A_ZIP = "not a torch checkpoint (no zip archive): truncated, or another kind of file"
TRUNCATED_SAFETENSORS = "truncated, or not a safetensors file"


def ct2_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file()


def hf_model_dir(path: Path) -> bool:
    """A Hugging Face model directory this project writes: config.json and safetensors weights."""
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("model*.safetensors"))


def gguf_file(path: Path) -> bool:
    """A GGUF file (llama.cpp's): its magic number."""
    try:
        with open(path, "rb") as f:
            return path.is_file() and f.read(4) == b"GGUF"
    except OSError:
        return False


def peft_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file()


def require_file(path: str | os.PathLike, what: str = "input") -> Path:
    """`path` if it is a file; else a FileNotFoundError naming it (for every script's inputs)."""
    p = Path(path)
    if p.is_dir():
        raise FileNotFoundError(f"{p}: is a directory, expected a file ({what})")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file ({what})")
    return p


def add_text_output(parser: argparse.ArgumentParser) -> None:
    """--output (a text file the script writes) and --force (replace what is not one)."""
    parser.add_argument("--output", required=True)
    parser.add_argument("--force", action="store_true",
                        help="replace an output that is not a text file (a directory, a binary)")


def check_output(path: str | os.PathLike, *, force: bool = False, own: Recognise = any_file) -> None:
    """Raise FileExistsError naming `path` if writing it would need --force (before any work)."""
    final = Path(path)
    if final.is_dir() and not final.is_symlink():
        if not force and any(final.iterdir()):
            if foreign := set() if own(final) else _files(final):
                # --force would refuse too (see `_replace`): say what will work
                raise FileExistsError(f"{final}: is a directory holding files this tool does "
                                      f"not write ({_shown(foreign)}); move them away or choose "
                                      f"another output (--force never deletes them)")
            what = "an earlier output of this tool" if own(final) else "empty folders only"
            raise FileExistsError(f"{final}: is a directory holding {what}; choose another "
                                  f"output, or pass --force to replace it")
    elif (final.exists() or final.is_symlink()) and not force and not own(final):
        raise FileExistsError(f"{final}: exists and is not what this tool writes; choose another "
                              f"output, or pass --force to replace it")


@contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = False,
                own: Recognise = any_file) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (file or directory); rename it to `path` on success.
    `own` recognises an existing output of this tool's kind (see the module's docstring)."""
    final = Path(path)
    check_output(final, force=force, own=own)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        try:
            yield tmp
            _replace(tmp, final, force=force, own=own)
        finally:
            _remove_quietly(tmp)
    except OSError as e:
        raise _write_error(e, final, tmp) from e


# Failures of a write that name no file (a full disk, a quota, an I/O error).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _write_error(e: OSError, final: Path, tmp: Path) -> OSError:
    """`e` as the user sees it: naming the output they asked for and the cause, never the
    temporary sibling (which means nothing to them); errors about other files (an input read
    while writing, check_output's refusals) are left as they are."""
    failed = Path(e.filename) if e.filename else None
    if failed is None and e.errno not in _WRITE_ERRNOS:
        return e
    if failed is not None and not (failed == final or failed == tmp or tmp in failed.parents
                                   or failed in final.parents):
        return e
    cause = e.strerror or str(e)
    if failed is not None and failed in final.parents:  # its folder could not be made
        cause += f" (making its folder {failed})"
    elif failed == tmp and isinstance(e, PermissionError):
        cause += f" (its folder {final.parent} is not writable)"
    elif failed is not None and tmp in failed.parents:  # a file inside an output directory
        cause += f" (writing {final / failed.relative_to(tmp)})"
    return type(e)(f"{final}: cannot write it: {cause}")


def _remove_quietly(path: Path) -> None:
    """Remove a temporary file; a failure to do so must not hide why the write failed."""
    try:
        _remove(path)
    except OSError:
        pass


def _replace(tmp: Path, final: Path, *, force: bool, own: Recognise) -> None:
    if not (final.is_dir() and not final.is_symlink()):
        check_output(final, force=force, own=own)  # it may have appeared meanwhile
        os.replace(tmp, final)  # a file or a symbolic link: only that name is replaced
        return
    lost = _files(final) - (_files(tmp) if tmp.is_dir() else set())
    if lost and not own(final):
        raise FileExistsError(f"{final}: is a directory holding files this tool does not write "
                              f"({_shown(lost)}); not replacing it even with --force: move it "
                              f"away or choose another output")
    check_output(final, force=force, own=own)
    # os.replace cannot replace a non-empty directory: move it aside, then delete only it.
    aside = final.with_name(f".{final.name}.old{os.getpid()}")
    _remove(aside)
    os.replace(final, aside)
    os.replace(tmp, final)
    _remove(aside)


def _shown(names: set[str]) -> str:
    return ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")


def _files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir()}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def no_example(path: str | os.PathLike) -> str | None:
    """Why the corpus at `path` (one example a line) holds no example: "0 bytes", or "only
    blank lines"; None when a line holds more than white space (read up to the first one)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            if chunk.strip():
                return None
    return "0 bytes" if Path(path).stat().st_size == 0 else "only blank lines"


def iter_lines(path: str | os.PathLike) -> Iterator[str]:
    """The lines of a UTF-8 text file, without their "\\n"; only "\\n" ends a line (a corpus line
    may hold other characters that str.splitlines() would split at)."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line.rstrip("\n")


def write_text(path: str | os.PathLike, text: str, *, force: bool = False) -> None:
    with atomic_path(path, force=force, own=text_file) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_lines(path: str | os.PathLike, lines: list[str], *, force: bool = False) -> None:
    write_text(path, "".join(line + "\n" for line in lines), force=force)


def write_json(path: str | os.PathLike, data: Any, *, force: bool = False, indent: int = 1) -> None:
    """`data` as UTF-8 JSON and a final newline (the Hugging Face release's files: indent 2)."""
    write_text(path, json.dumps(data, ensure_ascii=False, indent=indent) + "\n", force=force)
