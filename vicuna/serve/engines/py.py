"""The `py` mode: OpenNMT-py's own inference engine on the merged checkpoint (with
vicuna.onmt_fixes), configured from the options file as the tutorial configures it.

It does not stream: an answer reaches its watcher whole. Log-likelihoods come from the same
model (OpenNMT-py's decoder over the whole sequence); before anything is generated, a model
is built for them alone, streamed from the checkpoint (vicuna.weights.checkpoint.build_model).

A model with a sliding window (Mistral's): the whole-sequence pass keeps it (its band mask;
the log-likelihoods are transformers' past the window), OpenNMT-py 3.5.1's cached decoding does
not (it drops one key per step and then fails on its own padding mask): a prompt and answer
longer than the window are refused.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from vicuna import prompt
from vicuna.serve import decoding
from vicuna.serve.engines.base import Answer, Engine, Watcher
from vicuna.weights.shape import LLAMA_CONTEXT, model_window

SCORE_BATCH = 8  # sequences of one length scored together


class PyEngine(Engine):
    mode = "py"
    config_keys = ("device", "precision")
    batches_requests = False  # per-call settings live on OpenNMT-py's translator: one at a time

    @staticmethod
    def file_options(inference: dict, tokenizer_model: str) -> dict:
        device = inference["device"]
        # OpenNMT-py's translate options; the sentencepiece transform turns ｟newline｠ into
        # "\n" on the way in and back on the way out.
        return {
            "transforms": ["sentencepiece"],
            "tgt_subword_model": tokenizer_model,
            "batch_type": "sents",
            "gpu": -1 if device == "cpu" else 0,
            "world_size": 1,
            "gpu_ranks": [] if device == "cpu" else [0],
            "precision": inference["precision"],
            # OpenNMT-py's translator also writes every prediction to `output` (pred.txt in
            # the working directory by default); the callers write their own files.
            "output": "/dev/null",
        }

    def __init__(self, opts: dict, source: str | Path) -> None:
        self._onmt = None  # OpenNMT-py's InferenceEnginePY, built when first needed
        self._scorer = None  # a model for logprobs alone, while there is no _onmt
        super().__init__(opts, source)

    def check_model(self) -> None:
        from vicuna.weights import checkpoint  # torch: not at import (the rules read the registry)

        try:
            ck = checkpoint.load(self.opts["model"], kind="full", mmap=True)
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.source}: {e}") from None
        self._vocabulary = len(ck["vocab"]["src"])
        self.window = model_window(getattr(ck["opt"], "sliding_window", 0))

    def vocabulary_size(self) -> int:
        return self._vocabulary

    def _engine(self):
        if self._onmt is None:
            self._scorer = None  # one model in memory: the engine's serves logprobs too
            gc.collect()
            self._onmt = build_onmt_engine(self.opts)
        return self._onmt

    def generate(self, prompts: list[str], settings: dict | None = None,
                 watchers: Sequence[Watcher] | None = None) -> list[Answer]:
        lines = [prompt.to_line(p) for p in prompts]
        max_length = {**self.opts, **(settings or {})}.get("max_length", 0)
        for i, text in enumerate(prompts):
            if not text.strip():  # OpenNMT-py drops blank examples: the answers would shift
                raise ValueError(f"prompt {i} is empty: OpenNMT-py gives it no answer")
            self.check_window(f"prompt {i} and max_length {max_length}",
                              self.count_tokens(text) + max_length,
                              "OpenNMT-py's cached decoding does not keep a window (3.5.1 fails "
                              "past it): use the ct2 mode, or a shorter prompt or max_length")
        # `settings` are set on the translator for this call only (it reads them at each batch)
        translator = self._engine().translator
        saved = {attr: getattr(translator, attr) for attr in decoding.TRANSLATOR_ATTRS.values()}
        settings = dict(settings or {})
        seed = settings.pop(decoding.SEED, None)
        try:
            for key, value in settings.items():
                setattr(translator, decoding.TRANSLATOR_ATTRS[key], value)
            if translator.sample_from_topk == 0 and not translator.sample_from_topp \
                    and translator.random_sampling_temp != 0:
                # OpenNMT-py 3.5.1 runs beam search for top-k 0 and top-p 0 (translate_batch),
                # never sampling: top-k 0 means every token here (vicuna.serve.decoding), as in ct2
                translator.sample_from_topk = self._vocabulary
            if seed is not None:  # OpenNMT-py samples with torch's generator (torch.multinomial)
                import torch

                torch.manual_seed(seed)
            scores, preds = self._onmt.infer_list(lines)
        finally:
            for attr, value in saved.items():
                setattr(translator, attr, value)
        answers = []
        for pred, score in zip(preds, scores, strict=True):
            text = prompt.from_line(pred[0])
            # OpenNMT-py gives back detokenized text: its tokens are counted with the tokenizer
            answers.append(Answer(text, float(score[0]), len(self.sp.encode(text))))
        for watcher, answer in zip(watchers or (), answers, strict=False):
            watcher.update(answer.text, answer.tokens)
            watcher.end()
        return answers

    def pad_id(self) -> int:
        """OpenNMT-py's pad token in this model (its embedding is zero, its positions masked):
        the placeholder its answer-mask transform leaves in single-round training examples."""
        return self._model().decoder.embeddings.word_padding_idx

    def _model(self):
        if self._onmt is not None:
            return self._onmt.translator.model
        if self._scorer is None:
            import torch

            from vicuna.weights import checkpoint

            dtype = {"fp32": torch.float32, "fp16": torch.float16}[self.opts.get("precision", "fp32")]
            device = "cpu" if self.opts.get("gpu", -1) < 0 else f"cuda:{self.opts['gpu']}"
            self._scorer = checkpoint.build_model(checkpoint.load(self.opts["model"]),
                                                  device=device, dtype=dtype, consume=True)
        return self._scorer

    def logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        import torch

        from vicuna.weights import checkpoint

        model = self._model()
        device = next(model.parameters()).device
        result: list[list[float]] = [[] for _ in sequences]
        for batch in _by_length(sequences, shortest=2):
            tokens = torch.tensor([sequences[i] for i in batch], device=device)
            logits = checkpoint.logits(model, tokens[:, :-1])
            picked = -torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), tokens[:, 1:], reduction="none")
            for i, row in zip(batch, picked.tolist(), strict=True):
                result[i] = row
        return result

    def next_logprobs(self, sequences: list[list[int]], candidates: list[int]
                      ) -> list[list[float]]:
        import torch

        from vicuna.weights import checkpoint

        model = self._model()
        device = next(model.parameters()).device
        result: list[list[float]] = [[] for _ in sequences]
        for batch in _by_length(sequences, shortest=1):
            tokens = torch.tensor([sequences[i] for i in batch], device=device)
            # one pass for every candidate
            picked = checkpoint.next_log_probs(model, tokens)[:, candidates]
            for i, row in zip(batch, picked.tolist(), strict=True):
                result[i] = row
        return result

    def close(self) -> None:
        self._onmt = self._scorer = None
        gc.collect()


def _by_length(sequences: list[list[int]], shortest: int) -> Iterator[list[int]]:
    """Indexes of the sequences of `shortest` tokens or more, in batches of one length (no
    padding) of at most SCORE_BATCH."""
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(sequences):
        if len(seq) >= shortest:
            by_length.setdefault(len(seq), []).append(i)
    for indexes in by_length.values():
        for start in range(0, len(indexes), SCORE_BATCH):
            yield indexes[start:start + SCORE_BATCH]


def build_onmt_engine(opts: dict):
    """OpenNMT-py's InferenceEnginePY from the options, parsed by its own translate parser."""
    from vicuna import onmt_fixes

    onmt_fixes.apply()
    from onmt.inference_engine import InferenceEnginePY
    from onmt.opts import translate_opts
    from onmt.utils.misc import set_random_seed, use_gpu
    from onmt.utils.parse import ArgumentParser

    parser = ArgumentParser(description="vicuna py engine")
    translate_opts(parser)
    # this project's own option (vicuna.serve.options), read from the same file
    parser.add("--max_context_length", "-max_context_length", type=int, default=LLAMA_CONTEXT)
    with tempfile.TemporaryDirectory() as tmp:  # OpenNMT-py reads its options from a file
        config = Path(tmp) / "options.yaml"
        config.write_text(yaml.safe_dump(opts), encoding="utf-8")
        # -src is required by the parser but unused: prompts are passed as a list
        opt = parser.parse_args(["-config", str(config), "-src", "-"])
    ArgumentParser.validate_translate_opts(opt)
    ArgumentParser._get_all_transform_translate(opt)
    ArgumentParser._validate_transforms_opts(opt)
    ArgumentParser.validate_translate_opts_dynamic(opt)
    set_random_seed(opt.seed, use_gpu(opt))
    return InferenceEnginePY(opt)
