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


def rule_envs() -> dict[str, str | None]:
    """Each rule that runs a shell command -> the conda env it names (None: none), read from
    rules/*.smk rule by rule; a `use rule ... with:` inherits its parent's."""
    envs: dict[str, str | None] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        blocks = re.split(r"^\s*(?=(?:rule \w+:|use rule \w+ as \w+ with:))", text, flags=re.M)
        for block in blocks:
            if m := re.match(r"use rule (\w+) as (\w+) with:", block):
                envs[m.group(2)] = envs[m.group(1)]
            elif (m := re.match(r"rule (\w+):", block)) and "shell:" in block:
                env = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
                envs[m.group(1)] = env.group(1) if env else None
    return envs


def test_every_rule_uses_the_conda_env():
    envs = rule_envs()
    assert len(envs) >= 20 and "release_hf_base" in envs  # every rule of the graph
    assert {rule: env for rule, env in envs.items() if env != "../envs/vicuna.yaml"} == {}
