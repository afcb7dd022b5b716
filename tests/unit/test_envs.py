"""envs/*.yaml serve conda users; they must pin what `make install` pins."""

from __future__ import annotations

import re

import yaml
from helpers import REPO


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


def test_conda_env_pins_the_pip_requirements():
    env = yaml.safe_load((REPO / "envs/vicuna.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == pins((REPO / "requirements.txt").read_text().splitlines())


def test_post_deploy_installs_the_no_deps_pins():
    script = (REPO / "envs/vicuna.post-deploy.sh").read_text().split()
    nodeps = pins((REPO / "requirements-nodeps.txt").read_text().splitlines())
    assert nodeps and all(f"{name}=={version}" in script for name, version in nodeps.items())


def test_every_rule_uses_the_conda_env():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        assert text.count("shell:") == text.count('conda:\n        "../envs/vicuna.yaml"') + \
            text.count('conda:\n            "../envs/vicuna.yaml"'), smk.name
