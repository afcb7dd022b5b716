#!/usr/bin/env bash
# Run by Snakemake once the conda environment exists: OpenNMT-py without its stale torch pin,
# and this project's package (its scripts import `vicuna`).
set -euo pipefail
python -m pip install --no-deps opennmt-py==3.5.1
python -m pip install --no-deps -e "$(dirname "$0")/.."
