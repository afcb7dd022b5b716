"""convert_llama.py and extract_vocabulary.py: Meta's checkpoint -> OpenNMT-py, same logits."""

from __future__ import annotations

import pytest
import torch
from conftest import LLAMA_TOKENIZER, run_script

from vicuna import checkpoint, convert, llama


def test_converted_model_gives_the_reference_logits(tiny_meta):
    reference = llama.load_meta(tiny_meta["meta"])
    converted = checkpoint.build_model(checkpoint.load(tiny_meta["onmt"]))
    torch.manual_seed(1)
    tokens = torch.randint(3, reference.args.vocab_size, (3, 50))
    diff = (reference(tokens) - checkpoint.logits(converted, tokens)).abs().max().item()
    assert diff <= 1e-4


def test_vocabulary_is_the_tokenizer_with_the_pad_at_id_3(tiny_meta, tmp_path):
    import sentencepiece as spm

    run_script("extract_vocabulary.py", "-model", str(tiny_meta["onmt"]),
               "-out_file", str(tmp_path / "vocab.txt"), "-side", "src")
    vocab = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    sp = spm.SentencePieceProcessor(model_file=str(tiny_meta["tokenizer"]))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert vocab[:3] == ["<unk>", "<s>", "</s>"] and vocab[3] == "<blank>"
    assert vocab[4:] == pieces[4:] and len(vocab) == len(pieces)


@pytest.mark.skipif(not LLAMA_TOKENIZER.is_file(), reason="real LLaMA tokenizer fixture absent")
def test_real_llama_tokenizer_vocabulary():
    vocab = convert.vocabulary(LLAMA_TOKENIZER)
    assert len(vocab) == 32000
    assert vocab[3] == "<blank>" and vocab[13] == "<0x0A>" and vocab[:3] == ["<unk>", "<s>", "</s>"]


def test_existing_output_is_refused_without_force(tiny_meta):
    result = run_script("convert_llama.py", "--model_dir", str(tiny_meta["meta"]),
                        "--tokenizer_model", str(tiny_meta["tokenizer"]),
                        "--output", str(tiny_meta["onmt"]), check=False)
    assert result.returncode != 0 and "exists (pass --force" in result.stderr


def test_tokenizer_size_mismatch_is_refused_and_nothing_is_written(tiny_meta, tmp_path):
    from vicuna import tokenizer

    other = tokenizer.train(["only a few words here"] * 20, 280, tmp_path / "other.model")
    assert other.get_piece_size() != llama.load_meta(tiny_meta["meta"]).args.vocab_size
    out = tmp_path / "out.pt"
    result = run_script("convert_llama.py", "--model_dir", str(tiny_meta["meta"]),
                        "--tokenizer_model", str(tmp_path / "other.model"), "--output", str(out),
                        check=False)
    assert result.returncode != 0 and "other.model" in result.stderr and "pieces" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "other.model"]
