"""`ple reward train` from start to end: check everything, read the data, load the base, fit
the head as a linear probe, fine-tune (a classifier or a preference model), measure on the
held-out part, save."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict

import torch

from ple.errors import UserError
from ple.rewards.training.base_model import (encode, head_name, load_base_model,
                                             load_base_tokenizer, merged, score_ids, with_lora)
from ple.rewards.training.classifier import train_classifier
from ple.rewards.training.config import RewardTrainConfig
from ple.rewards.training.data import data_sources, split_examples
from ple.rewards.training.finetune import total_steps
from ple.rewards.training.metrics import accuracy, pairwise_accuracy, per_source_accuracy
from ple.rewards.training.pairwise import train_preference
from ple.rewards.training.probe import init_head_by_probe
from ple.rewards.training.save import check_output_dir, save_reward_model


def train_reward_model(cfg: RewardTrainConfig) -> dict:
    """Train, measure and save the reward model `cfg` describes. All input is checked before
    any model loads and before anything is written. Returns what reward_eval.json holds."""
    cfg.check()
    check_output_dir(cfg)
    train, held_out, dropped = split_examples(cfg)
    tokenizer = load_base_tokenizer(cfg.base, cfg.truncation_side)
    if cfg.text_format == "chat" and not tokenizer.chat_template:
        raise UserError(f"--text-format chat: the tokenizer of --base {cfg.base} has no chat "
                        f"template")
    started = time.time()
    torch.manual_seed(cfg.seed)  # LoRA draws its initial weights from the global generator
    preference = cfg.kind == "preference"
    model = load_base_model(cfg.base, 1 if preference else 2, tokenizer, cfg.seed)
    pad_id = tokenizer.pad_token_id
    head = head_name(model)
    # A classifier example is one text, kept in `chosen`; a pair has two.
    train_c = encode(tokenizer, cfg, [e.chosen for e in train])
    train_r = encode(tokenizer, cfg, [e.rejected for e in train]) if preference else None
    eval_c = encode(tokenizer, cfg, [e.chosen for e in held_out])
    eval_r = encode(tokenizer, cfg, [e.rejected for e in held_out]) if preference else None
    probe = None
    if cfg.probe_examples:
        if head is None:
            raise UserError(f"--base {cfg.base}: model class {type(model).__name__} has no "
                            f"`score` or `classifier` head to probe; give --probe-examples 0")
        probe = init_head_by_probe(cfg, model, head, train, train_c.ids,
                                   train_r.ids if preference else None, pad_id)
    model = with_lora(cfg, model)
    # The trainers want an output_dir; they save nothing in it (save.py saves the model).
    with tempfile.TemporaryDirectory(prefix="ple-reward-") as work_dir:
        if preference:
            model, log = train_preference(cfg, model, head, tokenizer, train_c.ids,
                                          train_r.ids, work_dir)
        else:
            model, log = train_classifier(cfg, model, head, train_c.ids,
                                          [e.label for e in train], pad_id, work_dir)
    train_seconds = time.time() - started
    model = merged(model)

    started = time.time()
    batch = max(cfg.batch_size, 16)
    if preference:
        metric, correct = pairwise_accuracy(
            score_ids(model, eval_c.ids, batch, pad_id, "held out (chosen)")[:, 0],
            score_ids(model, eval_r.ids, batch, pad_id, "held out (rejected)")[:, 0])
    else:
        metric, correct = accuracy(score_ids(model, eval_c.ids, batch, pad_id, "held out"),
                                   torch.tensor([e.label for e in held_out]))
    if len(data_sources(cfg)) > 1 and cfg.eval_data is None:
        metric["per_source"] = per_source_accuracy(held_out, correct.tolist())
    result = {
        "kind": cfg.kind, **metric,
        "n_train": len(train), "n_eval": len(held_out),
        **({"invalid_pairs_dropped": dropped} if preference else {}),
        "eval_source": cfg.eval_data or f"{cfg.eval_fraction:g} of each of {cfg.data} "
                                         f"(seed {cfg.seed})",
        "train_texts_truncated": train_c.truncated + (train_r.truncated if preference else 0),
        "eval_texts_truncated": eval_c.truncated + (eval_r.truncated if preference else 0),
        "texts_per_example": 2 if preference else 1,
        "max_length": cfg.max_length, "truncation_side": cfg.truncation_side,
        "steps": total_steps(cfg, len(train)), "probe": probe,
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.time() - started, 1),
        "first_loss": log[0]["loss"] if log else None,
        "last_loss": log[-1]["loss"] if log else None,
        "losses": log, "config": asdict(cfg),
    }
    save_reward_model(cfg, model, tokenizer, result)
    return result
