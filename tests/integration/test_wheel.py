"""The package as a wheel: built from a fresh clone's files, it holds every module of the tree
(every subpackage: weights, data, train, serve with its engines, ...), and installed without
`-e` into a scratch folder it runs a script with nothing of the checkout's package on the path."""

from __future__ import annotations

import os
import sys
import zipfile

from helpers import REPO, clone, env, run

PY = sys.executable


def test_wheel_holds_every_module_and_runs_a_script(tmp_path):
    src = clone(tmp_path / "src")  # the build writes build/ and *.egg-info: not in the checkout
    wheels = tmp_path / "wheels"
    # No build isolation: the venv's setuptools builds it (nothing is downloaded).
    built = run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".",
                 "-w", str(wheels)], cwd=src, env=env(), timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("vicuna_workflow-*.whl")

    tree = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "vicuna").rglob("*.py"))
    held = sorted(n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("vicuna/"))
    assert [n for n in tree if n not in held] == [], "modules left out of the wheel"
    assert [n for n in held if n not in tree] == [], "the wheel holds modules the tree has not"

    target = tmp_path / "site"
    installed = run([PY, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                     str(target), str(wheel)], env=env(), timeout=300)
    assert installed.returncode == 0, installed.stderr

    # Only the installed copy on the path (the venv's editable install of the checkout comes
    # after PYTHONPATH), from a folder that is not the checkout.
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    wheel_env = {**env(), "PYTHONPATH": str(target)}
    where = run([PY, "-c", "import vicuna, vicuna.serve.engines, vicuna.weights.convert as c; "
                 "print(vicuna.__file__); print(c.__file__)"],
                cwd=cwd, env=wheel_env, timeout=120)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(target) + os.sep) for line in where.stdout.split()), where.stdout

    helped = run([PY, str(REPO / "scripts" / "convert_llama.py"), "--help"],
                 cwd=cwd, env=wheel_env, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "--model_dir" in helped.stdout and "--tokenizer_model" in helped.stdout
