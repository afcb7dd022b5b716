"""The `ct2` mode: CTranslate2's Generator on the released model, tokenized with the same
sentencepiece model as OpenNMT-py (<s> + pieces), streaming token by token.

A prompt of a single token (<s> alone: an empty text) is never generated in a batch with
others: CTranslate2 4.8.5 then decodes every prompt of that batch as if it were empty (with
include_prompt_in_result=False). Such prompts are generated alone.

A model with a sliding window (Mistral's): CTranslate2 keeps it while it generates, but not
over a prompt longer than the window (other logits), and its score_batch fails past it
(vicuna.weights.ct2_release): such prompts and sequences are refused; an answer may go past.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from vicuna.serve import decoding
from vicuna.serve.engines.base import Answer, Engine, Watcher, cpu_threads


class Ct2Engine(Engine):
    mode = "ct2"
    config_keys = ("device", "compute_type", "cpu_threads")
    # CTranslate2 4.8 seeds each worker thread's random generator once, when it first samples
    # (ctranslate2.set_random_seed only sets the seed of threads still to come; measured: the
    # same seed set again before each call gives other answers).
    seed_unsupported = ("CTranslate2 seeds its random generator once per process, not per "
                        "request: a sampled answer depends on every answer sampled before it")

    @staticmethod
    def file_options(inference: dict, tokenizer_model: str) -> dict:
        # A fixed thread count: CTranslate2's CPU kernels split work by threads, and ties in
        # greedy decoding can fall differently with another split (a SLURM job vs a laptop).
        # the config's key names, unchanged on the way to the engine
        return {"device": inference["device"], "compute_type": inference["compute_type"],
                "cpu_threads": inference["cpu_threads"]}

    def __init__(self, opts: dict, source: str | Path) -> None:
        super().__init__(opts, source)
        import ctranslate2

        device = opts.get("device", "auto")
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        # compute_type "default" keeps the release's quantization where the device supports it
        # (int8_float16 runs as int8_float32 on a CPU, which has no float16 kernels): chosen
        # here, so CTranslate2 does not warn at every start that it had to choose.
        compute_type = opts.get("compute_type", "default")
        if compute_type == "default":
            compute_type = supported_compute_type(
                saved_compute_type(Path(opts["model"]) / "model.bin"),
                ctranslate2.get_supported_compute_types(device))
        self.generator = ctranslate2.Generator(
            opts["model"], device=device, compute_type=compute_type,
            inter_threads=1, intra_threads=cpu_threads(opts.get("cpu_threads", 0)),
        )
        if opts.get("seed") is not None:
            ctranslate2.set_random_seed(opts["seed"])

    def check_model(self) -> None:
        from vicuna.weights.ct2_release import sliding_window

        model = Path(self.opts["model"])
        if not (model / "model.bin").is_file():
            raise ValueError(f"{self.source}: {model}: not a CTranslate2 model directory (no "
                             f"model.bin): release the checkpoint with release_model.py")
        self.window = sliding_window(model)

    def vocabulary_size(self) -> int:
        model = Path(self.opts["model"])
        if (model / "vocabulary.json").is_file():
            return len(json.loads((model / "vocabulary.json").read_text(encoding="utf-8")))
        with open(model / "vocabulary.txt", encoding="utf-8") as f:  # older releases
            return sum(1 for _ in f)

    def generate(self, prompts: list[str], settings: dict | None = None,
                 watchers: Sequence[Watcher] | None = None) -> list[Answer]:
        args = decoding.ct2_args({**self.opts, **(settings or {})})
        tokens = [self.prompt_pieces(p) for p in prompts]
        for i, t in enumerate(tokens):
            self._check_prompt(f"prompt {i}", len(t))
        # batches CTranslate2 decodes correctly: the one-token prompts each alone
        singles = [i for i, t in enumerate(tokens) if len(t) == 1]
        batches = [[i for i, t in enumerate(tokens) if len(t) > 1], *([i] for i in singles)]
        answers: list[Answer | None] = [None] * len(prompts)
        for batch in filter(None, batches):
            for i, answer in zip(batch, self._generate([tokens[i] for i in batch], args, [
                    watchers[i] for i in batch] if watchers else None), strict=True):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    def _generate(self, tokens: list[list[str]], args: dict,
                  watchers: list[Watcher] | None) -> list[Answer]:
        callback = None
        if watchers:
            ids: list[list[int]] = [[] for _ in tokens]
            eos = self.sp.eos_id()

            def callback(step) -> bool:  # True stops that sequence, the others go on
                if step.token_id == eos:
                    return True
                ids[step.batch_id].append(step.token_id)
                return watchers[step.batch_id].update(self.sp.decode(ids[step.batch_id]),
                                                      len(ids[step.batch_id]))

            # CTranslate2 streams greedy search and sampling only
            args = {**args, "beam_size": 1}
        results = self.generator.generate_batch(tokens, callback=callback, **args)
        answers = []
        for r in results:
            pieces = r.sequences[0]
            answers.append(Answer(self.sp.decode_pieces(pieces), float(r.scores[0]), len(pieces)))
        for watcher in watchers or ():
            watcher.end()
        return answers

    def stream(self, prompt: str, settings: dict | None = None) -> Iterator[str]:
        """Token by token (CTranslate2's generate_tokens); closing the iterator stops it."""
        args = decoding.ct2_args({**self.opts, **(settings or {})})
        pieces = self.prompt_pieces(prompt)
        self._check_prompt("the prompt", len(pieces))
        steps = self.generator.generate_tokens(
            pieces, max_length=args["max_length"],
            sampling_topk=args["sampling_topk"], sampling_topp=args["sampling_topp"],
            sampling_temperature=args["sampling_temperature"],
        )
        try:
            yield from self.shown(step.token_id for step in steps)
        finally:
            steps.close()  # stops CTranslate2's decoding too (Stop button, STOP, end token)

    def _check_prompt(self, what: str, tokens: int) -> None:
        self.check_window(what, tokens, "CTranslate2 reads a prompt past its window otherwise "
                                        "than the model does (its answer may go past): shorten "
                                        "the prompt")

    def logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        scored = [i for i, seq in enumerate(sequences) if len(seq) > 1]
        for i in scored:  # the tokens read: all but the last
            self.check_window(f"sequence {i}", len(sequences[i]) - 1,
                              "CTranslate2's score_batch fails past a window: score it in the "
                              "py mode")
        pieces = [[self.sp.id_to_piece(t) for t in sequences[i]] for i in scored]
        results = self.generator.score_batch(
            pieces, max_batch_size=self.opts.get("batch_size", 16), max_input_length=0)
        out: list[list[float]] = [[] for _ in sequences]
        for i, r in zip(scored, results, strict=True):
            out[i] = list(r.log_probs)
        return out

    def close(self) -> None:
        del self.generator




def saved_compute_type(model_bin: Path) -> str | None:
    """The compute type a CTranslate2 model.bin was saved with ("int8_float16", "float32", ...),
    read from its variables' headers (the data is skipped); None where the file is not of the
    layout CTranslate2 4 writes."""
    from vicuna.weights.ct2_model_bin import variables

    try:
        # weights only: scalars are the spec's settings (flags, sizes), and quantization
        # scales stay float32 whatever the float type
        kinds = {v.kind for v in variables(model_bin) if v.shape and not v.name.endswith("_scale")}
    except (OSError, ValueError):
        return None
    quantized = next((k for k in ("int8", "int16") if k in kinds), None)
    floats = next((k for k in ("float16", "bfloat16") if k in kinds), "float32")
    if quantized:
        return quantized if floats == "float32" else f"{quantized}_{floats}"
    return floats


def supported_compute_type(saved: str | None, supported: set[str]) -> str:
    """The release's compute type where the device runs it, else the same quantization with
    float32 (CTranslate2's own choice for "default"); "default" where unknown."""
    if saved is None or saved in supported:
        return saved or "default"
    quantized = saved.split("_")[0] if saved.startswith("int") else None
    for candidate in (f"{quantized}_float32" if quantized else None, quantized, "float32"):
        if candidate in supported:
            return candidate
    return "default"
