"""Workarounds for OpenNMT-py 3.5.1 under today's torch, each applied once, here.

Call `apply()` before OpenNMT-py builds, loads or runs anything. Each fix has a test
(tests/unit/test_onmt_fixes.py) that fails if the trap comes back.
"""

from __future__ import annotations

import argparse
import functools

import torch

_applied = False
# The version whose internals the patches below were written against (and tested on).
ONMT_VERSION = "3.5.1"


def check_onmt_version(version: str | None = None) -> None:
    """A one-line error before patching another OpenNMT-py's internals (whose names and
    arguments may differ, and a silent mismatch would train or decode wrongly)."""
    if version is None:
        import onmt

        version = getattr(onmt, "__version__", "unknown")
    if version != ONMT_VERSION:
        # a ValueError, as every user-fixable error: the scripts report it in one line
        raise ValueError(f"OpenNMT-py {version} is installed, but vicuna.onmt_fixes patches "
                           f"OpenNMT-py {ONMT_VERSION}'s internals: install opennmt-py=="
                           f"{ONMT_VERSION} (make install)")


def allow_checkpoint_pickles() -> None:
    """torch >= 2.6 loads with weights_only=True; OpenNMT-py checkpoints keep their options
    in an argparse.Namespace, which must be allow-listed (nothing else in them needs it)."""
    torch.serialization.add_safe_globals([argparse.Namespace])


def patch(owner: object, name: str, fixed_version) -> None:
    """Replace owner.<name> by fixed_version(original), once: a second call (apply() again, or a
    fix called by itself) finds the mark and changes nothing."""
    original = getattr(owner, name)
    if getattr(original, "_vicuna_fixed", False):
        return
    fixed = functools.wraps(original)(fixed_version(original))
    fixed._vicuna_fixed = True
    setattr(owner, name, fixed)


def freeze_generator_with_lora() -> None:
    """With LoRA, OpenNMT-py marks only LoRA weights trainable *before* it attaches the output
    layer, so the generator trains too, yet LoRA checkpoints are saved with generator=None and
    what it learned is lost. Freeze it, so training optimizes what is actually saved."""
    check_onmt_version()
    import onmt.model_builder as builder

    def fixed(original):
        def build_base_model(model_opt, vocabs):
            model = original(model_opt, vocabs)
            if getattr(model_opt, "lora_layers", None) or getattr(model_opt, "lora_embedding", False):
                for param in model.generator.parameters():
                    param.requires_grad = False
            return model
        return build_base_model

    patch(builder, "build_base_model", fixed)


def fix_cached_rotary_position() -> None:
    """In cached decoding, GeneratorLM passes `step + max(src_len)` as the position of the
    token generated at `step`: one too far (the prompt fills positions 0..len-1, so the token
    fed at step 1 sits at position len). Shift every step after the prompt back by one."""
    check_onmt_version()
    from onmt.translate.translator import GeneratorLM

    def fixed(original):
        def _decode_and_generate(self, decoder_in, enc_out, batch, src_len, src_map=None,
                                 step=None, batch_offset=None, return_attn=False):
            if step:  # 0 or None: the whole prompt at once, positions start at 0
                step -= 1
            return original(self, decoder_in, enc_out, batch, src_len, src_map=src_map,
                            step=step, batch_offset=batch_offset, return_attn=return_attn)
        return _decode_and_generate

    patch(GeneratorLM, "_decode_and_generate", fixed)


def batches_before(trainer, steps: int) -> int:
    """How many batches an uninterrupted run has trained on when `steps` steps are done: each
    step takes accum_count batches (as the trainer's schedule gives it for that step)."""
    return sum(trainer._accum_count(step) for step in range(1, steps + 1))


def continue_the_data_on_resume() -> None:
    """A run resumed from step N reads its corpora from their first batch again: the first
    batches are trained on twice and the last never. OpenNMT-py's reader keeps no position, but
    it is deterministic (the seed fixes its bucket shuffling), so the resumed trainer skips the
    batches the first N steps took, and goes on with those an uninterrupted run trains on."""
    import itertools

    from onmt.trainer import Trainer

    def fixed(original):
        def train(self, train_iter, train_steps, *args, **kwargs):
            done = self.optim.training_step - 1
            if done > 0:
                skip = batches_before(self, done)
                print(f"resume: skipping the {skip} batches of steps 1-{done}: the data goes on "
                      f"where the run that was stopped left it", flush=True)
                train_iter = itertools.islice(train_iter, skip, None)
            return original(self, train_iter, train_steps, *args, **kwargs)
        return train

    patch(Trainer, "train", fixed)


def mask_every_answer() -> None:
    """zero_out_prompt_loss keeps the loss on what follows the first placeholder of each row
    (a cumulative sum over pad positions), and OpenNMT-py's placeholder transform puts none where
    the response pattern occurs twice: a multi-round conversation then carries no loss at all.
    In validation it is wrong on single rounds too: LM validation batches are left-padded, so the
    sum counts the padding, the prompt of every shorter row carries the loss and its target ids
    are multiplied by the count (other tokens, or ids past the vocabulary).
    Mask each row with vicuna.loss_mask.answer_mask instead: rows with the placeholder (single
    round) as OpenNMT-py masks right-padded rows, other rows on every answer of the
    conversation, padding on either side left out. LossCompute.ignore_prompt serves both
    training and validation."""
    check_onmt_version()
    from onmt.utils.loss import LossCompute

    def fixed(original):
        def ignore_prompt(self, batch):
            tgt = batch["tgt"]
            keep = batch_answer_mask(self.vocab, batch["src"][:, :, 0], batch["srclen"])
            keep = keep[:, :tgt.size(1)].to(tgt.device).unsqueeze(-1)
            batch["tgt"] = torch.where(keep, tgt, torch.full_like(tgt, self.padding_idx))
            return batch
        return ignore_prompt

    patch(LossCompute, "ignore_prompt", fixed)


_SURFACES: dict[int, tuple[object, list[bytes]]] = {}


def vocab_surfaces(vocab) -> list[bytes]:
    """loss_mask.vocab_bytes of an OpenNMT-py (pyonmttok) vocabulary, once per vocabulary."""
    from onmt.constants import DefaultTokens

    from vicuna import loss_mask

    known = _SURFACES.get(id(vocab))
    if known is None or known[0] is not vocab:
        specials = (DefaultTokens.BOS, DefaultTokens.EOS, DefaultTokens.PAD, DefaultTokens.UNK)
        known = _SURFACES[id(vocab)] = (vocab, loss_mask.vocab_bytes(vocab.ids_to_tokens, specials))
    return known[1]


def batch_answer_mask(vocab, src: torch.Tensor, srclen: torch.Tensor) -> torch.Tensor:
    """The loss mask of an LM batch's target side ([batch, len] bools), from its source side
    (<s> + the tokens: unlike the target, never touched by the masking, so masking twice gives
    the same). The target of a row is its source's tokens after <s>, then </s>, at the same
    positions: right-padded in training, left-padded in validation (a row that starts with the
    pad token)."""
    from onmt.constants import DefaultTokens

    from vicuna import loss_mask

    surfaces = vocab_surfaces(vocab)
    pad, eos = vocab[DefaultTokens.PAD], vocab[DefaultTokens.EOS]
    width = src.size(1)
    out = torch.zeros(src.size(0), width, dtype=torch.bool)
    for r, (row, n) in enumerate(zip(src.tolist(), srclen.tolist(), strict=True)):
        start = width - n if n < width and row[0] == pad else 0
        ids = row[start + 1:start + n] + [eos]
        out[r, start:start + n] = torch.tensor(loss_mask.answer_mask(ids, surfaces, pad=pad, eos=eos))
    return out


def flush_tensorboard_at_each_report() -> None:
    """OpenNMT-py's SummaryWriter hands each event to a background thread, which writes it when
    it next gets its turn: a kill can catch events still queued. Flushing after each report
    (which waits for the queue to be written) puts every event up to a step checkpoint on disk
    before that checkpoint is saved: the training report and the validation of a step come
    before its save, so a resumed run finds all the steps it goes on from."""
    check_onmt_version()
    from onmt.utils.report_manager import ReportMgr

    def fixed(original):
        def maybe_log_tensorboard(self, *args, **kwargs):
            original(self, *args, **kwargs)
            if self.tensorboard_writer is not None:
                self.tensorboard_writer.flush()
        return maybe_log_tensorboard

    patch(ReportMgr, "maybe_log_tensorboard", fixed)


def apply() -> None:
    global _applied
    if _applied:
        return
    allow_checkpoint_pickles()
    freeze_generator_with_lora()
    fix_cached_rotary_position()
    mask_every_answer()
    continue_the_data_on_resume()
    _applied = True
