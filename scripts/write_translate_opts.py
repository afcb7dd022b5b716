#!/usr/bin/env python
"""Write translate_opts_<mode>.yaml, the inference options of one mode, from config.yaml's
`inference` section: the same decoding options for OpenNMT-py (`py`), CTranslate2 (`ct2`) and
llama.cpp (`gguf`).
Only the mode's keys are read (vicuna.serve.engines.config_keys)."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from vicuna import run_layout
from vicuna.files import add_text_output, check_output, require_file, text_file, write_text
from vicuna.serve import engines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=sorted(engines.REGISTRY), required=True)
    p.add_argument("--model", required=True,
                   help="merged checkpoint (py), CTranslate2 dir (ct2) or GGUF file (gguf)")
    p.add_argument("--tokenizer_model", required=True)
    p.add_argument("--inference_json", required=True,
                   help="config.yaml's inference section (the mode's keys at least)")
    add_text_output(p)
    a = p.parse_args()
    try:
        check_output(a.output, force=a.force, own=text_file)
        require_file(a.tokenizer_model, "sentencepiece model")
        try:
            opts = engines.options_file(a.mode, a.model, a.tokenizer_model,
                                        json.loads(a.inference_json))
        except json.JSONDecodeError as e:
            raise ValueError(f"--inference_json: not JSON ({e})") from None
        except KeyError as e:
            raise ValueError(f"--inference_json: key {e} is missing (config.yaml's inference "
                             f"section)") from None
        header = run_layout.written_by(f"translate_opts, mode {a.mode}", "its inference section")
        write_text(a.output, header + yaml.safe_dump(opts, sort_keys=False), force=a.force)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
