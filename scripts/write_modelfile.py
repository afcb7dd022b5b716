#!/usr/bin/env python
"""Write an Ollama Modelfile beside a GGUF release: FROM the GGUF (a file in the same folder),
the conversation template giving the chatbot's prompt, the stop at the next round, and the
decoding defaults of an options file (translate_opts_<mode>.yaml). Then:
`ollama create NAME -f MODELFILE` and `ollama run NAME`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vicuna.files import add_text_output, check_output, gguf_file, require_file, text_file, write_text
from vicuna.serve import options
from vicuna.serve.modelfile import modelfile
from vicuna.weights.gguf_export import sliding_window


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gguf", required=True, help="the GGUF file FROM names (in the Modelfile's "
                                                 "folder)")
    p.add_argument("--options", required=True,
                   help="an options file (translate_opts_<mode>.yaml): its decoding defaults")
    add_text_output(p)
    a = p.parse_args(argv)
    try:
        check_output(a.output, force=a.force, own=text_file)
        gguf = require_file(a.gguf, "GGUF")
        if not gguf_file(gguf):
            raise ValueError(f"{gguf}: not a GGUF file")
        if gguf.resolve().parent != Path(a.output).resolve().parent:
            raise ValueError(f"--gguf {gguf}: must be in the Modelfile's folder "
                             f"({Path(a.output).parent}), which FROM is relative to")
        opts = options.load(a.options)
        write_text(a.output, modelfile(gguf.name, opts, sliding_window(gguf)), force=a.force)
    except (OSError, ValueError) as e:
        sys.exit("error: " + " ".join(str(e).split()))
    print(f"wrote {a.output} (FROM ./{gguf.name})")


if __name__ == "__main__":
    main()
