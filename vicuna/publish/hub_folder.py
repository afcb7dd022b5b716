"""The folder a user uploads to the Hub as it is (`hf upload OWNER/NAME FOLDER`): the release's
files and the card, README.md, at its root. The files are hard links to the release's, not
copies (a 7B release is 13 GB: the folder costs no second copy); where the file system cannot
link (another device), they are copied.

Written as every output is (vicuna.files.atomic_path): in a temporary folder renamed at the end.
An existing folder is replaced only if it is one of these: its README.md is a card this package
wrote, or, where Snakemake removed the README.md (the rule's declared output) before rerunning,
nothing in it but hard links, whose data the release still holds.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from vicuna.files import atomic_path
from vicuna.publish.card import MARK, README

_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def hub_folder(path: Path) -> bool:
    """Whether `path` is a folder `write_folder` made (see the module's docstring)."""
    if not path.is_dir() or path.is_symlink():
        return False
    readme = path / README
    if readme.is_file():
        try:
            return MARK in readme.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
    files = [p for p in path.rglob("*") if not p.is_dir()]
    return bool(files) and all(p.is_file() and not p.is_symlink() and p.stat().st_nlink > 1
                               for p in files)


def link_or_copy(source: Path, target: Path) -> bool:
    """`target` as a hard link to `source` (True), or a copy where no link can be made."""
    try:
        os.link(source, target)
        return True
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
    shutil.copy2(source, target)
    return False


def write_folder(folder: str | Path, files: list[Path], root: Path | None, card: str, *,
                 force: bool = False) -> list[str]:
    """The folder: each of `files` (at its path under `root`, or by name without one) and the
    card as README.md. What was copied rather than linked, for the log."""
    copied = []
    names = [p.relative_to(root) if root else Path(p.name) for p in files]
    if Path(README) in names:
        raise ValueError(f"{root or files[0].parent}: holds a {README} of its own; the card "
                         f"would replace it")
    with atomic_path(folder, force=force, own=hub_folder) as tmp:
        tmp.mkdir()
        for source, name in zip(files, names, strict=True):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if not link_or_copy(source, tmp / name):
                copied.append(str(name))
        (tmp / README).write_text(card, encoding="utf-8")
    return copied
