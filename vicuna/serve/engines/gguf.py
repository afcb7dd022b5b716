"""The `gguf` mode: llama.cpp (vicuna.weights.llamacpp, llama-cpp-python's low-level API) on
the GGUF release of `inference.gguf_type` (Q8_0 by default), on the CPU.

The model reads the same token ids as in the other modes: <s> + the sentencepiece pieces of
the prompt, given to llama.cpp as ids (its own tokenizer is never asked). llama.cpp computes
the logits; the next token is chosen here (decoding.gguf_args, `pick`), so the options mean
what they mean in `py` and `ct2`, and a seed makes a sampled answer reproducible: each answer
draws from its own generator, seeded by the call's seed, else from the options file's.

One sequence at a time, in one context: llama.cpp's batched decode of several sequences is
not bit for bit the decode of each alone (float32 logits differ in the 7th digit, Q8_0 ones in
the 3rd with a shared KV cache: tests/unit/test_gguf_engine.py shows it in llama.cpp itself),
and a greedy tie could then fall the other way beside other requests. So an answer never
depends on the others, and the API serves requests one after another (`batches_requests`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vicuna.serve import decoding, options
from vicuna.serve.engines.base import Answer, Engine, Watcher, cpu_threads

if TYPE_CHECKING:  # numpy and llama.cpp load with the engine (the rules read the registry)
    import numpy as np

    from vicuna.weights import llamacpp

# Tokens computed at once inside one llama_decode call (llama.cpp's default): bounds the
# compute buffers whatever the context length; a longer prompt is decoded in several steps.
UBATCH = 512


class GgufEngine(Engine):
    mode = "gguf"
    # inference.gguf_type picks the file (the workflow's MODE_MODEL), as release.quantization
    # picks ct2's: the engine reads what it is given
    config_keys = ("cpu_threads",)
    batches_requests = False  # one sequence at a time (above): requests wait their turn

    @staticmethod
    def file_options(inference: dict, tokenizer_model: str) -> dict:
        # a fixed thread count, as ct2's: the same answers on every machine
        return {"cpu_threads": inference["cpu_threads"]}

    def __init__(self, opts: dict, source: str | Path) -> None:
        import numpy as np

        beam = decoding.gguf_args(opts)["beam_size"]
        if beam != 1:
            given = "" if "beam_size" in opts else " (OpenNMT-py's default: the file sets none)"
            raise ValueError(f"{source}: option 'beam_size' is {beam}{given}: the gguf mode "
                             f"decodes greedily or samples, one candidate per answer (no beam "
                             f"search): set beam_size: 1")
        self._vocab_model: llamacpp.Model | None = None
        self.model: llamacpp.Model | None = None
        try:
            super().__init__(opts, source)
            self._check_pieces()
        finally:
            if self._vocab_model is not None:
                self._vocab_model.close()
        from vicuna.weights import llamacpp

        self.n_ctx = options.context_length(opts)
        self.model = llamacpp.Model(opts["model"], n_ctx=self.n_ctx,
                                    threads=cpu_threads(opts.get("cpu_threads", 0)),
                                    n_ubatch=min(UBATCH, self.n_ctx))
        self._seeds = np.random.default_rng(opts.get("seed"))  # one seed per answer, in order
        self._lock = threading.Lock()  # one context: one answer at a time, whoever asks

    def check_model(self) -> None:
        from vicuna.weights import llamacpp

        model = Path(self.opts["model"])
        if model.is_dir():
            raise ValueError(f"{self.source}: {model}: a directory, not a GGUF file: give a "
                             f"GGUF release (<step>.concat-<type>.gguf; release_model.py "
                             f"--format gguf)")
        if not model.is_file():
            raise ValueError(f"{self.source}: {model}: no such file (the gguf mode's model)")
        if not llamacpp.is_gguf(model):
            raise ValueError(f"{self.source}: {model}: not a GGUF file (it does not start "
                             f"with 'GGUF'): give a GGUF release (<step>.concat-<type>.gguf; "
                             f"release_model.py --format gguf)")
        try:  # the vocabulary and the metadata only, for the checks before the weights load
            self._vocab_model = llamacpp.Model(model, vocab_only=True)
        except ValueError as e:
            raise ValueError(f"{self.source}: {e}") from None
        from vicuna.weights.gguf_export import sliding_window

        self.window = sliding_window(model)  # llama.cpp's llama architecture ignores it

    def vocabulary_size(self) -> int:
        return self._vocab_model.vocab_size

    def _check_pieces(self) -> None:
        """The ids given to llama.cpp mean the same pieces in the file as in the tokenizer (a
        tokenizer of the same size but another model would give fluent nonsense)."""
        for i in range(self.sp.get_piece_size()):
            ours, theirs = self.sp.id_to_piece(i), self._vocab_model.piece(i)
            if ours != theirs:
                raise ValueError(f"{self.source}: the tokenizer {self.opts['src_subword_model']} "
                                 f"is not the vocabulary of the model {self.opts['model']} (id "
                                 f"{i}: {ours!r} in the tokenizer, {theirs!r} in the model): "
                                 f"give the tokenizer the model was released with "
                                 f"(src_subword_model)")

    # --- generating ----------------------------------------------------------------------------
    def _rngs(self, n: int, settings: dict | None) -> list[np.random.Generator]:
        """One random generator per answer: from the call's seed (each answer alike, whatever
        else the call holds), else seeded in turn from the engine's generator, which the
        options file's seed seeded once (the options file's seed is no per-call seed: each
        call would sample the same answers again)."""
        import numpy as np

        seed = (settings or {}).get(decoding.SEED)
        seeds = [seed] * n if seed is not None else \
            [int(s) for s in self._seeds.integers(2**63, size=n)]
        return [np.random.default_rng(s) for s in seeds]

    def _tokens(self, ids: list[int], args: dict, rng: np.random.Generator
                ) -> Iterator[tuple[int, float]]:
        """The answer's tokens after the prompt `ids` and each one's log-probability, up to
        the end token (yielded too), `max_length` tokens or the context's end; the caller
        holds the lock."""
        if len(ids) > self.n_ctx:
            raise ValueError(f"a prompt of {len(ids)} tokens: more than the context's "
                             f"{self.n_ctx} (max_context_length): cut it first")
        self.check_window(f"a prompt of {len(ids)} tokens and max_length {args['max_length']}",
                          len(ids) + args["max_length"], WINDOW_IGNORED)
        self.model.clear()
        logits = self.model.decode(ids, 0)
        eos = self.sp.eos_id()
        position = len(ids)
        for count in range(1, args["max_length"] + 1):
            allowed = logits
            if count <= args["min_length"]:  # no end before min_length tokens
                allowed = logits.copy()
                allowed[eos] = -float("inf")
            token = pick(allowed, args, rng)
            yield token, token_logprob(logits, token)
            if token == eos or count == args["max_length"] or position >= self.n_ctx:
                return
            logits = self.model.decode([token], position)
            position += 1

    def generate(self, prompts: list[str], settings: dict | None = None,
                 watchers: Sequence[Watcher] | None = None) -> list[Answer]:
        args = decoding.gguf_args({**self.opts, **(settings or {})})
        answers = []
        with self._lock:
            rngs = self._rngs(len(prompts), settings)
            for i, text in enumerate(prompts):
                watcher = watchers[i] if watchers else None
                ids: list[int] = []
                logprobs: list[float] = []
                for token, logprob in self._tokens(self.prompt_ids(text), args, rngs[i]):
                    logprobs.append(logprob)
                    if token == self.sp.eos_id():
                        break
                    ids.append(token)
                    if watcher is not None and watcher.update(self.sp.decode(ids), len(ids)):
                        break
                # the mean log-probability of the tokens generated (the end token too), as
                # CTranslate2 scores an answer
                score = sum(logprobs) / len(logprobs)
                answers.append(Answer(self.sp.decode(ids), score, len(ids)))
                if watcher is not None:
                    watcher.end()
        return answers

    def stream(self, prompt: str, settings: dict | None = None) -> Iterator[str]:
        """Token by token; closing the iterator stops decoding."""
        args = decoding.gguf_args({**self.opts, **(settings or {})})
        with self._lock:
            [rng] = self._rngs(1, settings)
            tokens = self._tokens(self.prompt_ids(prompt), args, rng)
            try:
                yield from self.shown(token for token, _ in tokens)
            finally:
                tokens.close()

    # --- scoring -------------------------------------------------------------------------------
    def _check_length(self, sequences: list[list[int]]) -> None:
        for i, seq in enumerate(sequences):
            if len(seq) > self.n_ctx:
                raise ValueError(f"sequence {i} has {len(seq)} tokens, more than the context's "
                                 f"{self.n_ctx} (max_context_length)")
            self.check_window(f"sequence {i}", len(seq), WINDOW_IGNORED)

    def logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        self._check_length(sequences)
        out: list[list[float]] = []
        with self._lock:
            for seq in sequences:
                if len(seq) < 2:
                    out.append([])
                    continue
                self.model.clear()
                every = log_softmax(self.model.decode(seq[:-1], 0, every=True))
                out.append(every[range(len(seq) - 1), seq[1:]].tolist())
        return out

    def next_logprobs(self, sequences: list[list[int]], candidates: list[int]
                      ) -> list[list[float]]:
        """Every candidate read off one pass per sequence."""
        self._check_length(sequences)
        out: list[list[float]] = []
        with self._lock:
            for seq in sequences:
                self.model.clear()
                out.append(log_softmax(self.model.decode(seq, 0))[candidates].tolist())
        return out

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


# why a sequence longer than the model's sliding window is refused in this mode
WINDOW_IGNORED = ("llama.cpp's llama architecture does not keep a sliding window (its logits past "
                  "it are those of the model without one): use the py or ct2 mode, or a shorter "
                  "prompt or max_length")


def token_logprob(logits: np.ndarray, token: int) -> float:
    """One token's log-probability from one position's float32 logits: what an answer's score
    needs, at each generated token, without log_softmax's float64 copy of the vocabulary."""
    import numpy as np

    top = logits.max()
    return float(logits[token] - top - np.log(np.exp(logits - top).sum(dtype=np.float64)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log-probabilities over the last axis, in float64."""
    import numpy as np

    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def pick(logits: np.ndarray, args: dict, rng: np.random.Generator) -> int:
    """The next token from one position's logits, as decoding.gguf_args says."""
    import numpy as np

    if args["greedy"]:
        return int(np.argmax(logits))  # the first of equal ones, as torch's argmax
    scaled = logits.astype(np.float64) / args["temperature"]
    order = np.argsort(-scaled, kind="stable")
    if 0 < args["top_k"] < len(order):
        order = order[:args["top_k"]]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if 0 < args["top_p"] < 1:  # the fewest most likely tokens whose mass reaches top_p
        keep = min(int(np.searchsorted(np.cumsum(probs), args["top_p"])) + 1, len(order))
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])
