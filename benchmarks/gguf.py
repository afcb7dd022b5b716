"""llama.cpp's own conversion of a Hugging Face model to GGUF (F32, Q8_0, ...): its
convert_hf_to_gguf.py, which the llama-cpp-python wheel does not ship, taken from the sdist of
the installed version (fetched with pip, into the work folder) with the gguf-py and conversion/
it imports; or a converter given by path.

    convert(work, hf_dir, {"gguf_f32": "f32", "gguf_q8_0": "q8_0"}) -> {"gguf_f32": path, ...}
                                                    or {"gguf_skip": why there are none}
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

INSTALL = "pip install -r benchmarks/requirements-peers.txt"


def sdist_converter(work: Path) -> tuple[str | None, str]:
    """(convert_hf_to_gguf.py from the installed llama-cpp-python's sdist, or None; why not)."""
    try:
        import llama_cpp
    except ImportError:
        return None, f"llama-cpp-python is not installed ({INSTALL})"
    version = llama_cpp.__version__
    target = work / "sdist"
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                          "--no-binary", ":all:", "-d", str(target),
                          f"llama-cpp-python=={version}"], capture_output=True, text=True)
    sdists = sorted(target.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        return None, (f"llama-cpp-python {version}'s sdist could not be fetched for its converter "
                      f"({got.stderr.strip()[-200:]})")
    with tarfile.open(sdists[0]) as tar:
        root = tar.getnames()[0].split("/")[0] + "/vendor/llama.cpp/"
        wanted = [m for m in tar.getmembers() if m.name.startswith(root) and (
            m.name == root + "convert_hf_to_gguf.py"
            or m.name.startswith((root + "gguf-py/", root + "conversion/")))]
        tar.extractall(target, members=wanted, filter="data")
    converter = target / root / "convert_hf_to_gguf.py"
    if not converter.is_file():
        return None, f"{sdists[0].name} has no vendor/llama.cpp/convert_hf_to_gguf.py"
    return str(converter), ""


def convert(work: Path, hf: Path, outtypes: dict[str, str], converter: str | None = None) -> dict:
    """{key: GGUF path} for each {key: llama.cpp outtype}, or {"gguf_skip": reason}."""
    if converter is None:
        converter, why = sdist_converter(work)
        if converter is None:
            return {"gguf_skip": why}
    out = {}
    for key, outtype in outtypes.items():
        path = work / f"model-{outtype}.gguf"
        got = subprocess.run([sys.executable, converter, str(hf), "--outtype", outtype,
                              "--outfile", str(path)], capture_output=True, text=True)
        if got.returncode != 0 or not path.is_file():
            return {"gguf_skip": f"{converter} --outtype {outtype} failed: "
                                 f"{got.stderr.strip().splitlines()[-1:]}"}
        out[key] = str(path)
    return out
