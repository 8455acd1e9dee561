"""The held-out measures of a reward model, as reward_eval.json records them."""

from __future__ import annotations

import math

import torch

from ple.rewards.training.data import Example


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """(the classifier's measures, which examples it got right): argmax of the logits =
    label, and the share of label 1 (the majority baseline)."""
    correct = logits.argmax(-1) == labels
    return ({"metric": "accuracy", "accuracy": correct.float().mean().item(),
             "eval_label_1_share": labels.float().mean().item()}, correct)


def pairwise_accuracy(r_chosen: torch.Tensor, r_rejected: torch.Tensor
                      ) -> tuple[dict, torch.Tensor]:
    """(the preference model's measures, which pairs it got right): r(chosen) > r(rejected),
    a tie counting as wrong (and counted), and the mean margin."""
    correct = r_chosen > r_rejected
    return ({"metric": "pairwise_accuracy", "pairwise_accuracy": correct.float().mean().item(),
             "ties": int((r_chosen == r_rejected).sum().item()),
             "mean_margin": (r_chosen - r_rejected).mean().item()}, correct)


def per_source_accuracy(held_out: list[Example], correct: list[bool]) -> dict:
    """{data file: {"n", "accuracy", "se"}} over the held-out examples of each file."""
    by_source: dict[str, list[bool]] = {}
    for example, ok in zip(held_out, correct):
        by_source.setdefault(example.source, []).append(bool(ok))
    result = {}
    for source, oks in by_source.items():
        share = sum(oks) / len(oks)
        result[source] = {"n": len(oks), "accuracy": share,
                          "se": math.sqrt(share * (1 - share) / len(oks))}
    return result
