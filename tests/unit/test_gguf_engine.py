"""The `gguf` mode (vicuna/serve/engines/gguf.py) on a random tiny LLaMA's F32 GGUF, run by
llama.cpp itself (llama-cpp-python), checked against transformers on the same model exported
to Hugging Face's layout: greedy answers are transformers' greedy answers, scores are its
log-probabilities. The decoding options mean what they mean in the other modes, a seed
repeats a sampled answer, the stop rule cuts, the context ends an answer, and every wrong
input is a named error. llama.cpp's batched decode is shown not to be the single one: why
the engine decodes one sequence at a time."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers import call_script

from vicuna import prompt, tokenizer
from vicuna.serve import engines, stops
from vicuna.serve.engines.gguf import pick
from vicuna.weights import llamacpp

PROMPTS = [prompt.conversation([], f"Repeat these words.\n{w}")
           for w in ("cat dog", "sun moon star", "red", "one two three four")]
SAMPLE = {"random_sampling_topk": 0, "random_sampling_temp": 1.0}  # every token


@pytest.fixture(scope="module")
def engine(tiny_options):
    e = engines.load("gguf", tiny_options["gguf"])
    yield e
    e.close()


@pytest.fixture(scope="module")
def hf_model(tiny_meta, tmp_path_factory):
    """transformers' LlamaForCausalLM on the same model (float32 export): the oracle."""
    from transformers import LlamaForCausalLM

    out = tmp_path_factory.mktemp("hf") / "tiny-hf"
    call_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(out),
                "--format", "huggingface", "--dtype", "float32", "--tokenizer_model",
                str(tiny_meta["tokenizer"]))
    return LlamaForCausalLM.from_pretrained(out).eval()


def options_with(tiny_options, tmp_path, **changes):
    opts = yaml.safe_load(tiny_options["gguf"].read_text())
    path = tmp_path / "translate_opts_gguf.yaml"
    path.write_text(yaml.safe_dump({**opts, **changes}))
    return path


# --- llama.cpp itself -------------------------------------------------------------------------

def decode_together(path, prompts: list[list[int]], unified: bool, steps: int = 6):
    """Greedy steps of `prompts` decoded together, one llama_decode per step with every
    sequence in it (llama.cpp's batched decoding): each step's logits, per sequence."""
    lib = llamacpp.library()
    n = len(prompts)
    mparams = lib.llama_model_default_params()
    mparams.n_gpu_layers, mparams.use_extra_bufts = 0, False
    model = lib.llama_model_load_from_file(str(path).encode(), mparams)
    cparams = lib.llama_context_default_params()
    cparams.n_ctx = 1024 * (1 if unified else n)
    cparams.n_batch = cparams.n_ubatch = cparams.n_ctx
    cparams.n_seq_max, cparams.kv_unified = n, unified
    cparams.n_threads = cparams.n_threads_batch = 1
    cparams.type_k = cparams.type_v = llamacpp.GGML_TYPE_F32
    cparams.flash_attn_type = 0
    ctx = lib.llama_init_from_model(model, cparams)
    vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    pending, start = [list(p) for p in prompts], [0] * n
    out: list[list[np.ndarray]] = [[] for _ in prompts]
    try:
        for _ in range(steps):
            batch = lib.llama_batch_init(sum(map(len, pending)), 0, n)
            k, last = 0, {}
            for s, tokens in enumerate(pending):
                for j, token in enumerate(tokens):
                    batch.token[k], batch.pos[k] = token, start[s] + j
                    batch.n_seq_id[k], batch.seq_id[k][0] = 1, s
                    batch.logits[k] = j == len(tokens) - 1
                    last[s] = k
                    k += 1
                start[s] += len(tokens)
            batch.n_tokens = k
            assert lib.llama_decode(ctx, batch) == 0
            for s in range(n):
                row = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, last[s]),
                                            shape=(vocab,)).copy()
                out[s].append(row)
                pending[s] = [int(row.argmax())]
            lib.llama_batch_free(batch)
    finally:
        lib.llama_free(ctx)
        lib.llama_model_free(model)
    return out


def test_llama_cpps_batched_decode_is_not_the_decode_of_each_alone(engine, tiny_options,
                                                                   tiny_meta, tmp_path):
    """Why the engine decodes one sequence at a time: the same sequence's logits differ with
    others beside it (float32 in the last digits; more with a Q8_0 file), so a near tie could
    fall the other way. If this stops failing in a new llama.cpp, batching could come."""
    q8 = tmp_path / "tiny-q8_0.gguf"
    call_script("release_model.py", "--model", str(tiny_meta["onmt"]), "--output", str(q8),
                "--format", "gguf", "--gguf_type", "q8_0", "--tokenizer_model",
                str(tiny_meta["tokenizer"]))
    ids = [engine.prompt_ids(p) for p in PROMPTS]
    differ = []
    for path in (tiny_options["gguf_release"], q8):
        for unified in (False, True):
            alone = [decode_together(path, [p], unified)[0] for p in ids]
            together = decode_together(path, ids, unified)
            assert all(np.allclose(a, b, atol=1e-2) for s in range(len(ids))
                       for a, b in zip(alone[s], together[s], strict=True))  # close, though
            differ.append(any(not np.array_equal(a, b) for s in range(len(ids))
                              for a, b in zip(alone[s], together[s], strict=True)))
    assert any(differ), "llama.cpp's batched decode is now bit for bit the single one"


# --- against transformers -------------------------------------------------------------------

def test_greedy_answers_are_transformers_greedy_answers(engine, hf_model, tiny_options):
    import torch

    answers = engine.generate(PROMPTS)
    for text, answer in zip(PROMPTS, answers, strict=True):
        ids = torch.tensor([engine.prompt_ids(text)])
        out = hf_model.generate(ids, max_new_tokens=tiny_options["max_length"],
                                do_sample=False, eos_token_id=engine.sp.eos_id(),
                                pad_token_id=engine.sp.eos_id())[0, ids.shape[1]:].tolist()
        out = out[:out.index(engine.sp.eos_id())] if engine.sp.eos_id() in out else out
        assert answer.text == engine.sp.decode(out)
        assert answer.tokens == len(out) > 0
    assert len({a.text for a in answers}) > 1  # the prompts' answers differ: a fair test


def test_scores_are_transformers_log_probabilities(engine, hf_model):
    import torch

    sequences = [engine.prompt_ids(p) for p in PROMPTS] + [[1], [1, 5]]
    with torch.no_grad():
        expected = [torch.log_softmax(hf_model(torch.tensor([s])).logits[0].double(), -1)
                    for s in sequences]
    got = engine.logprobs(sequences)
    assert got[-2] == [] and len(got[-1]) == 1
    for seq, want, have in zip(sequences, expected, got, strict=True):
        picked = want[range(len(seq) - 1), seq[1:]].numpy()
        assert np.allclose(have, picked, atol=1e-4), np.abs(np.array(have) - picked).max()
    assert np.ptp(np.concatenate(got[:-2])) > 1  # values far apart: the tolerance means something
    candidates = [5, 40, 300]
    nexts = engine.next_logprobs(sequences[:2], candidates)
    for row, want in zip(nexts, expected[:2], strict=True):
        assert np.allclose(row, want[-1, candidates].numpy(), atol=1e-4)


# --- decoding options, seeds, the stop rule, the context ------------------------------------

def test_options_mean_what_they_mean_in_the_other_modes(engine):
    greedy = [a.text for a in engine.generate(PROMPTS)]
    assert [a.text for a in engine.generate(PROMPTS, {**SAMPLE, "random_sampling_temp": 0})] \
        == greedy  # temperature 0 is greedy, whatever top-k says
    assert [a.text for a in engine.generate(PROMPTS, {**SAMPLE, "random_sampling_topk": 1})] \
        == greedy  # top-k 1 is greedy at any temperature
    assert [a.text for a in engine.generate(PROMPTS, {**SAMPLE, "random_sampling_topp": 1e-6})] \
        == greedy  # the smallest nucleus: the most likely token alone
    sampled = {engine.generate(PROMPTS[:1], {**SAMPLE, "seed": s})[0].text for s in range(4)}
    assert len(sampled) > 1  # top-k 0: every token, sampled
    # without a seed, each call samples anew (the options file's seed is no per-call seed)
    assert len({engine.generate(PROMPTS[:1], SAMPLE)[0].text for _ in range(4)}) > 1
    assert engine.generate(PROMPTS[:1], {"max_length": 3})[0].tokens == 3
    # min_length (no end token before it): on a trained model, tests/integration/test_workflow.py


def test_pick_draws_within_top_k_and_top_p():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    rng = np.random.default_rng(0)

    def draws(**args) -> set[int]:
        args = {"greedy": False, "top_k": 0, "top_p": 0.0, "temperature": 1.0, **args}
        return {pick(logits, args, rng) for _ in range(300)}

    assert draws() == {0, 1, 2, 3}
    assert draws(top_k=2) == {0, 1}
    assert draws(top_p=0.6) == {0, 1}  # 0.5 < 0.6 <= 0.8: the fewest reaching it
    assert draws(top_p=0.5) == {0}
    assert draws(top_k=3, top_p=0.99) == {0, 1, 2}
    assert pick(logits, {"greedy": True}, rng) == 0


def test_a_seed_repeats_a_sampled_answer_alone_or_beside_others(engine, tiny_options):
    one = engine.generate(PROMPTS[2:3], {**SAMPLE, "seed": 11})[0].text
    assert engine.generate(PROMPTS[2:3], {**SAMPLE, "seed": 11})[0].text == one
    beside = engine.generate(PROMPTS, {**SAMPLE, "seed": 11})
    assert beside[2].text == one
    assert engine.generate(PROMPTS[2:3], {**SAMPLE, "seed": 12})[0].text != one
    # without a per-call seed: the options file's seed, one draw per answer in order, so a
    # fresh engine answers a sampled batch the same way again
    again = engines.load("gguf", tiny_options["gguf"])
    fresh = engines.load("gguf", tiny_options["gguf"])
    try:
        assert [a.text for a in again.generate(PROMPTS, SAMPLE)] == \
            [a.text for a in fresh.generate(PROMPTS, SAMPLE)]
    finally:
        again.close()
        fresh.close()


def test_the_stop_rule_cuts_and_stops_decoding(engine):
    full = engine.generate(PROMPTS[1:2])[0]
    stop = full.text[4:7]
    assert len(full.text) > 8 and full.text.find(stop) == 4, full.text
    cutter = stops.Cutter(stops=(stop,))
    cut = engine.generate(PROMPTS[1:2], None, [cutter])[0]
    assert cutter.text() == full.text[:4] and cutter.finish_reason == "stop"
    assert cut.tokens < full.tokens  # it stopped decoding there
    shown = list(engine.stream(PROMPTS[1]))
    assert shown[-1] == stops.until_stops(full.text, hold=False)[0]
    assert all(b.startswith(a.rstrip("\ufffd")) for a, b in zip(shown, shown[1:], strict=False))
    limit = stops.Cutter(max_length=3)
    engine.generate(PROMPTS[1:2], None, [limit])
    assert limit.tokens == 3 and limit.finish_reason == "length"


def test_the_context_ends_an_answer_and_refuses_a_longer_prompt(engine, tiny_options, tmp_path):
    ids = engine.prompt_ids(PROMPTS[3])
    short = engines.load("gguf", options_with(tiny_options, tmp_path, max_length=16,
                                              max_context_length=len(ids) + 2))
    try:
        answer = short.generate(PROMPTS[3:4])[0]
        full = engine.generate(PROMPTS[3:4])[0]
        assert answer.tokens == 3 and full.text.startswith(answer.text)  # positions n, n+1
        with pytest.raises(ValueError, match=f"more than the context's {len(ids) + 2}"):
            short.generate([PROMPTS[3] + " and more words"])
        with pytest.raises(ValueError, match="sequence 0 has"):
            short.logprobs([ids + [5, 5, 5]])
    finally:
        short.close()


# --- wrong inputs ------------------------------------------------------------------------------

def test_wrong_model_files_are_named(tiny_options, tiny_meta, tmp_path):
    cases = {
        tmp_path / "missing.gguf": "no such file",
        tiny_options["ct2_release"]: "a directory, not a GGUF file",
        tiny_meta["onmt"]: "not a GGUF file",
    }
    for model, words in cases.items():
        path = options_with(tiny_options, tmp_path, model=str(model))
        with pytest.raises(ValueError) as e:
            engines.load("gguf", path)
        message = str(e.value)
        assert message.startswith(f"{path}: {model}") and words in message, message
        assert "\n" not in message


def test_a_tokenizer_of_another_model_is_refused(tiny_options, tmp_path):
    from vicuna.tiny import synthetic

    sets = synthetic.generate(seed=8, n_alpaca=300, n_sharegpt=50, n_heldout=10, n_pretrain=300)
    other = tmp_path / "other.model"
    size = tokenizer.load(yaml.safe_load(tiny_options["gguf"].read_text())["src_subword_model"]
                          ).get_piece_size()
    tokenizer.train([r["instruction"] + " " + r["output"] for r in sets["alpaca"]][::-1]
                    + sets["pretrain"][:50], size, other)
    path = options_with(tiny_options, tmp_path, src_subword_model=str(other))
    with pytest.raises(ValueError, match=r"is not the vocabulary of the model .* \(id \d+: "):
        engines.load("gguf", path)


def test_beam_search_is_refused_by_name(tiny_options, tmp_path):
    path = options_with(tiny_options, tmp_path, beam_size=2)
    with pytest.raises(ValueError, match=f"^{path}: option 'beam_size' is 2: .*set beam_size: 1"):
        engines.load("gguf", path)



def test_heldout_losses_in_the_gguf_mode_are_the_py_modes(tiny_meta, tiny_options):
    """The held-out losses (heldout_loss.py --mode) of the F32 GGUF of the model in the gguf
    mode are the py mode's on its checkpoint (the workflow's rule scores the checkpoints; a
    GGUF is scored by hand)."""
    from vicuna.evaluation import evaluate

    lines = ["Below is a task.｟newline｠Answer it.", "cat dog｟newline｠dog cat"]
    scores = {mode: evaluate.heldout_losses({"finetuned": model}, {"valid": lines},
                                            str(tiny_meta["tokenizer"]), "cpu", "fp32",
                                            mode=mode)["finetuned"]["valid_loss"]
              for mode, model in (("py", tiny_meta["onmt"]), ("gguf", tiny_options["gguf_release"]))}
    assert scores["gguf"] == pytest.approx(scores["py"], abs=1e-3)
