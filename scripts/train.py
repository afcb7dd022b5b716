#!/usr/bin/env python
"""onmt_train with this project's fixes applied (vicuna.onmt_fixes), the GPUs the job got,
Adam where FusedAdam's Apex is missing, and resumption: a run that was killed goes on from
its newest complete step checkpoint, if the config and every file it names are unchanged
(vicuna.train.resume), its TensorBoard curves continued, each step once. With -n_sample (a dump of
each corpus's first examples) and the loss on the answers only (zero_out_prompt_loss), each
dumped corpus also gets `<corpus>.sample.src.loss`: the pieces that carry the loss in
[brackets] (vicuna.loss_mask).

    python scripts/train.py -config replicate_vicuna.yaml [-tensorboard_history FILE.json]
                            [other onmt_train options]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from vicuna import loss_mask, onmt_fixes
from vicuna.train import console, events, resume, training


def main() -> None:
    # allow_abbrev off: onmt_train's own options (-tensorboard) must pass through untouched
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("-config", required=True)
    p.add_argument("-no_resume", action="store_true", help="always start from step 0")
    p.add_argument("-console_fd", metavar="FD",
                   help="also write the start and stop lines (the step resumed from, the "
                        "checkpoint a rerun goes on from) to this file descriptor: the rule "
                        "passes the console (3>&2) while the log gets everything")
    p.add_argument("-tensorboard_history", type=Path,
                   help="after training, write this JSON file: the TensorBoard event files of "
                        "the training (a killed run's and the run that resumed it), their steps")
    a, rest = p.parse_known_args()
    if not Path(a.config).is_file():
        sys.exit(f"error: {a.config}: no such file (the finetuning config)")
    with open(a.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)

    try:
        onmt_fixes.apply()
    except ValueError as e:
        sys.exit(f"error: {e}")
    from onmt.bin.train import main as onmt_train

    log_dir = events.tensorboard_dir(cfg)
    if a.tensorboard_history and not log_dir:
        sys.exit(f"error: {a.config}: tensorboard is off, so there is no history for "
                 f"-tensorboard_history {a.tensorboard_history}")

    extra = training.gpu_args(torch.cuda.device_count()) + training.optim_args(cfg)
    out = console.Console(console.console_fd(a.console_fd))
    if "-n_sample" not in rest:  # a training, not a dump of samples
        onmt_fixes.flush_tensorboard_at_each_report()
        if not a.no_resume:
            more, _ = resume.resume_args(a.config, cfg, say=out.say)
            extra += more
        elif log_dir:
            events.keep_events_until(log_dir, 0)  # from step 0: the old curves are not of it
        if not any(arg == "-train_from" for arg in extra):
            out.say(f"finetune: training from step 0 to {cfg['train_steps']}")
    sys.argv = ["onmt_train", "-config", a.config, *extra, *rest]
    if "-n_sample" in rest:
        dump = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        dump.add_argument("-save_data", required=True)
        save_data = dump.parse_known_args(rest)[0].save_data
        try:
            onmt_train()
        except SystemExit as e:  # OpenNMT-py exits once the samples are saved
            if e.code not in (None, 0):
                raise
        if cfg.get("zero_out_prompt_loss"):
            from onmt.constants import CorpusName  # where save_transformed_sample writes

            loss_mask.write_samples(Path(save_data).parent / CorpusName.SAMPLE)
        return
    try:
        with console.stop_on_sigterm():
            onmt_train()
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (console.Stopped)
        # what a rerun does, not a traceback through torch, as the log's last line (the
        # Snakefile's onerror shows it on the console); exit as the signal would
        why = "SIGTERM" if isinstance(stop, console.Stopped) else "Ctrl-C"
        print(console.stopped_line(cfg["save_model"], why), flush=True)
        sys.exit(console.exit_code(stop))
    resume.remove_resume_file(cfg["save_model"])  # finished: nothing resumes from it
    if a.tensorboard_history:
        try:
            events.write_tensorboard_history(log_dir, a.tensorboard_history)
        except (OSError, ValueError) as e:
            sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
