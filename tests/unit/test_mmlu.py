"""vicuna/evaluation/mmlu.py against an oracle: on a random tiny LLaMA converted to OpenNMT-py and exported
to Hugging Face, the per-question choices of both methods (`generate`, `loglik`) equal those that
transformers computes on the same prompts; the prompts are Hendrycks' layout to the character;
a prompt over 8,192 characters loses its first shots, one over the context is cut and counted."""

from __future__ import annotations

import csv
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from helpers import fails, run_script

from vicuna.evaluation import evaluate, mmlu
from vicuna.serve import engines

transformers = pytest.importorskip("transformers")

DEV = {
    "abstract_algebra": [
        (f"Find the order of element {i} in Z_{i + 4}.", str(i), str(i + 1), "2", "none", "ABCD"[i % 4])
        for i in range(5)
    ],
    "high_school_biology": [
        (f'Which organelle, "number {i}", makes ATP?', "nucleus", "mitochondrion", "ribosome",
         "vacuole", "B") for i in range(5)
    ],
}
LONG = "Read the passage and answer. " + " ".join(["cat dog sun moon tree fish"] * 285) + " Which?"
TEST = {
    "abstract_algebra": [
        ("Is Z_2 a field?", "yes", "no", "only under addition", "none of these", "A"),
        ("How many elements does S_3 have?", "3", "6", "9", "2", "B"),
        ("Is every group abelian?", "yes", "no", "only finite ones", "only cyclic ones", "B"),
    ],
    "high_school_biology": [
        ("What carries oxygen in blood?", "plasma", "platelets", "hemoglobin", "lymph", "C"),
        (LONG, "cat", "dog", "sun", "moon", "D"),
        ("DNA is made of?", "amino acids", "nucleotides", "lipids", "sugars only", "B"),
    ],
}
CONTEXT = 1024  # the long prompt (thousands of tokens of the tiny tokenizer) is cut to this; the others fit


def write_data(root: Path) -> Path:
    for split, sets in (("dev", DEV), ("test", TEST)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for subject, rows in sets.items():
            with open(root / split / f"{subject}_{split}.csv", "w", newline="") as f:
                csv.writer(f).writerows(rows)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("mmlu") / "data")


def test_prompt_is_hendrycks_layout_to_the_character(data_dir):
    data = mmlu.load(data_dir)
    assert list(data) == ["abstract_algebra", "high_school_biology"]
    questions = mmlu.items(data, shots=5)
    assert [(q.subject, q.index, q.gold) for q in questions] == [
        ("abstract_algebra", 0, "A"), ("abstract_algebra", 1, "B"), ("abstract_algebra", 2, "B"),
        ("high_school_biology", 0, "C"), ("high_school_biology", 1, "D"),
        ("high_school_biology", 2, "B")]
    assert questions[0].prompt == (
        "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
        "Find the order of element 0 in Z_4.\nA. 0\nB. 1\nC. 2\nD. none\nAnswer: A\n\n"
        "Find the order of element 1 in Z_5.\nA. 1\nB. 2\nC. 2\nD. none\nAnswer: B\n\n"
        "Find the order of element 2 in Z_6.\nA. 2\nB. 3\nC. 2\nD. none\nAnswer: C\n\n"
        "Find the order of element 3 in Z_7.\nA. 3\nB. 4\nC. 2\nD. none\nAnswer: D\n\n"
        "Find the order of element 4 in Z_8.\nA. 4\nB. 5\nC. 2\nD. none\nAnswer: A\n\n"
        "Is Z_2 a field?\nA. yes\nB. no\nC. only under addition\nD. none of these\nAnswer:")
    assert mmlu.items(data, shots=1)[3].prompt == (
        "The following are multiple choice questions (with answers) about  high school biology.\n\n"
        'Which organelle, "number 0", makes ATP?\nA. nucleus\nB. mitochondrion\nC. ribosome\n'
        "D. vacuole\nAnswer: B\n\n"
        "What carries oxygen in blood?\nA. plasma\nB. platelets\nC. hemoglobin\nD. lymph\nAnswer:")
    # over 8,192 characters: the first shots go, the last ones stay, as few dropped as need be
    long = questions[4]
    shot = 'Which organelle, "number {}", makes ATP?\nA. nucleus\nB. mitochondrion\nC. ribosome\n' \
           "D. vacuole\nAnswer: B\n\n"
    question = f"{LONG}\nA. cat\nB. dog\nC. sun\nD. moon\nAnswer:"
    header = "The following are multiple choice questions (with answers) about  high school biology.\n\n"
    assert 0 < long.shots < 5
    assert long.prompt == header + "".join(shot.format(i) for i in range(5 - long.shots, 5)) + question
    assert len(long.prompt) <= 8192 < len(long.prompt) + len(shot.format(4 - long.shots))
    assert all(q.shots == 5 for q in questions if q is not long)


def test_a_tar_reads_as_its_directory_and_missing_subjects_are_named(data_dir, tmp_path):
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data_dir, arcname="data")
    assert mmlu.load(archive) == mmlu.load(data_dir) == mmlu.load(data_dir.parent)
    assert list(mmlu.load(archive, ["high_school_biology"])) == ["high_school_biology"]
    with pytest.raises(ValueError, match="virology"):
        mmlu.load(archive, ["virology"])


@pytest.fixture(scope="module")
def exported(tiny_meta, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mmlu_hf") / "hf"
    run_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(out),
               "--format", "huggingface", "--tokenizer_model", str(tiny_meta["tokenizer"]),
               "--dtype", "float32")
    return out


def oracle(model_dir: Path, sp, prompts: list[str]) -> dict[str, list[str]]:
    """Both methods computed with transformers alone: the next token's argmax, decoded and
    stripped; the letter whose tokens after the prompt have the highest log-likelihood."""
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out: dict[str, list[str]] = {"generate": [], "loglik": []}
    with torch.no_grad():
        for text in prompts:
            ids = [sp.bos_id(), *sp.encode(text)]
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            out["generate"].append(sp.decode([int(logits[-1].argmax())]).strip())
            totals = []
            for letter in "ABCD":
                seq = ids + sp.encode(letter)
                logp = model(input_ids=torch.tensor([seq])).logits[0].log_softmax(-1)
                totals.append(sum(float(logp[t - 1, seq[t]]) for t in range(len(ids), len(seq))))
            out["loglik"].append("ABCD"[max(range(4), key=totals.__getitem__)])
    return out


def test_choices_equal_transformers_on_the_same_prompts(data_dir, tiny_meta, exported):
    opts = engines.scoring_options("py", tiny_meta["onmt"], tiny_meta["tokenizer"], "cpu", "fp32",
                               batch_size=4, context=CONTEXT)
    engine = engines.load("py", opts, source="test")
    questions = mmlu.items(mmlu.load(data_dir), shots=5)
    got = mmlu.choices(engine, questions, batch_size=4)
    cut = [q for q in questions if q.truncated]
    assert len(cut) == 1 and cut[0].index == 1 and cut[0].truncated["budget"] == CONTEXT - max(
        len(ids) for ids in mmlu.letter_ids(engine.sp).values())
    assert engine.count_tokens(cut[0].prompt) <= cut[0].truncated["budget"]
    assert cut[0].prompt.endswith("\nA. cat\nB. dog\nC. sun\nD. moon\nAnswer:")
    expected = oracle(exported, engine.sp, [q.prompt for q in questions])
    print(got, expected)
    assert got == expected
    engine.close()


def test_one_pass_gives_the_next_token_log_probabilities_transformers_gives(tiny_meta, exported):
    """The py engine's one-pass `next_logprobs` (the vocabulary projected at the last position
    only) against transformers' log-softmax after the same ids, and against the generic way
    (each candidate appended and scored): prompts of equal and of different lengths."""
    opts = engines.scoring_options("py", tiny_meta["onmt"], tiny_meta["tokenizer"], "cpu", "fp32",
                               batch_size=4, context=CONTEXT)
    engine = engines.load("py", opts, source="test")
    candidates = [ids[-1] for ids in mmlu.letter_ids(engine.sp).values()]  # any token ids will do
    texts = ["Is Z_2 a field?\nAnswer:", "Is Z_3 a field?\nAnswer:", "What carries oxygen?\nAnswer:",
             "x"]
    sequences = [engine.prompt_ids(t) for t in texts]
    assert len(sequences[0]) == len(sequences[1]) != len(sequences[2])
    got = engine.next_logprobs(sequences, candidates)
    generic = engines.Engine.next_logprobs(engine, sequences, candidates)
    model = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = [model(input_ids=torch.tensor([seq])).logits[0, -1].log_softmax(-1)[candidates]
                    for seq in sequences]
    for row, slow, oracle_row in zip(got, generic, expected, strict=True):
        assert row == pytest.approx(oracle_row.tolist(), abs=1e-4)
        assert row == pytest.approx(slow, abs=1e-4)
    engine.close()


def test_one_token_letters_are_scored_in_one_pass(tiny_meta, monkeypatch):
    """With letters of one token each (LLaMA's "▁A"; the tiny tokenizer's are two), `loglik`
    reads them off one pass per prompt (next_logprobs, not logprobs) and picks the letters the
    four-sequence way picks."""
    opts = engines.scoring_options("py", tiny_meta["onmt"], tiny_meta["tokenizer"], "cpu", "fp32",
                               batch_size=4, context=CONTEXT)
    engine = engines.load("py", opts, source="test")
    one_token = {c: [engine.sp.piece_to_id(piece)] for c, piece in zip(mmlu.CHOICES, "abcd", strict=True)}
    assert all(ids[0] != engine.sp.unk_id() for ids in one_token.values())
    prompts = ["Is Z_2 a field?\nAnswer:", "DNA is made of?\nAnswer:", "Which one?\nAnswer:"]
    expected = []
    for text in prompts:
        ids = engine.prompt_ids(text)
        scores = engine.logprobs([ids + one_token[c] for c in mmlu.CHOICES])
        expected.append(mmlu.CHOICES[max(range(4), key=lambda j: scores[j][-1])])
    monkeypatch.setattr(mmlu, "letter_ids", lambda sp: one_token)
    monkeypatch.setattr(engine, "logprobs", None)  # the four-sequence way is not taken
    assert mmlu.choose_loglik(engine, prompts) == expected
    engine.close()


def test_scores_and_rows(data_dir, tiny_meta):
    def load_engine(path):
        return engines.load("py", engines.scoring_options("py", path, tiny_meta["tokenizer"], "cpu",
                                                          "fp32", 8, context=CONTEXT),
                            source=str(path))

    data = mmlu.load(data_dir)
    result, rows = mmlu.evaluate({"base": tiny_meta["onmt"], "finetuned": tiny_meta["onmt"]},
                                 data, 5, load_engine, log=lambda _: None)
    assert rows[0] == ("subject\tindex\tgold\tshots\tbase_generate\tbase_loglik"
                       "\tfinetuned_generate\tfinetuned_loglik")
    assert len(rows) == 7 and rows[5].startswith("high_school_biology\t1\tD\t")
    for name in ("base", "finetuned"):
        assert result[name]["prompts_cut"] == 1
        for method in mmlu.METHODS:
            score = result[name][method]
            picked = [row.split("\t")[4 + mmlu.METHODS.index(method)] for row in rows[1:]]
            hits = sum(p == row.split("\t")[2] for p, row in zip(picked, rows[1:], strict=True))
            assert score["acc_all"] == round(hits / 6, 4) and score["n"] == 6
            assert {s: v["n"] for s, v in score["subjects"].items()} == {
                "abstract_algebra": 3, "high_school_biology": 3}
    joined = {"base": {}, "finetuned": {}}
    evaluate.join_mmlu(joined, result)
    assert joined["base"] == {"mmlu_generate_acc": result["base"]["generate"]["acc_all"],
                              "mmlu_loglik_acc": result["base"]["loglik"]["acc_all"]}


def mmlu_args(data: Path, tiny_meta: dict, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--base", str(tiny_meta["onmt"]), "--finetuned",
            str(tiny_meta["onmt"]), "--tokenizer_model", str(tiny_meta["tokenizer"]),
            "--json", str(out / "mmlu.json"), "--tsv", str(out / "mmlu.tsv"), *extra]


def test_a_subject_missing_a_file_or_its_questions_is_named_unless_subjects_are(
        data_dir, tmp_path, tiny_meta):
    """Scoring every subject found, a subject whose dev file (or test file, or questions) is
    missing is an error naming that file, in a directory as in an archive; named subjects are
    scored alone, whatever the others lack."""
    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    (broken / "dev" / "high_school_biology_dev.csv").unlink()
    fails("mmlu.py", *mmlu_args(broken, tiny_meta, tmp_path),
          culprit=broken / "dev" / "high_school_biology_dev.csv")
    assert not (tmp_path / "mmlu.json").exists()
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(broken, arcname="data")
    with pytest.raises(ValueError, match=f"^{archive}:data/dev/high_school_biology_dev.csv: "
                                         "no such file"):
        mmlu.load(archive)
    assert list(mmlu.load(broken, ["abstract_algebra"])) == ["abstract_algebra"]

    (broken / "test" / "high_school_biology_test.csv").unlink()
    (broken / "dev" / "virology_dev.csv").write_text("")
    with pytest.raises(ValueError, match=f"^{broken}/test/virology_test.csv: no such file"):
        mmlu.load(broken)
    (broken / "test" / "virology_test.csv").write_text("\n")
    with pytest.raises(ValueError, match=f"^{broken}/test/virology_test.csv: no question; "
                                         "name the subjects"):
        mmlu.load(broken)
    assert list(mmlu.load(broken, ["abstract_algebra"])) == ["abstract_algebra"]


def test_more_shots_than_dev_rows_is_a_warning_and_the_shots_used_are_recorded(
        data_dir, tmp_path, tiny_meta):
    result = run_script("mmlu.py", *mmlu_args(data_dir, tiny_meta, tmp_path, "--shots", "7",
                                              "--methods", "loglik", "--subjects",
                                              "abstract_algebra"))
    assert ("warning: --shots 7, but dev/abstract_algebra_dev.csv has 5 rows: abstract_algebra "
            "is scored 5-shot") in result.stdout + result.stderr
    scores = json.loads((tmp_path / "mmlu.json").read_text())
    assert scores["shots"] == 7 and scores["shots_used"] == {"abstract_algebra": 5}
    rows = (tmp_path / "mmlu.tsv").read_text().splitlines()[1:]
    assert {row.split("\t")[3] for row in rows} == {"5"}
