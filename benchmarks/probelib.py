"""What the principle probes share (hh_principle_probe.py, principle_probe.py): responses
sampled in batches from a fixed seed, and the paired gap between principle-guided and plain
responses to the same queries, which is what decides PLE's branch (Eqs. 3-4)."""

from __future__ import annotations

import torch

from ple.evaluation.metrics import mean_and_se
from ple.rollout import decode, sample


def sample_texts(model, tokenizer, prompts: list[list[int]], max_new_tokens: int,
                 temperature: float, batch_size: int, seed: int) -> list[str]:
    """One response per prompt (token ids), as ple trains: top-p and top-k off."""
    torch.manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch_size):
        out += decode(tokenizer, sample(model, tokenizer, prompts[i:i + batch_size],
                                        max_new_tokens, temperature, 1.0, 0))
    return out


def paired_gap(plain: list[float], guided: list[float], tau: float) -> dict:
    """s' - s paired by query (mean, SE), and the share of pairs over tau (mean, SE): with
    tau = 0, P(s' > s)."""
    gaps = [g - p for g, p in zip(guided, plain)]
    return {"gap": mean_and_se(gaps), "over_tau": mean_and_se([float(g > tau) for g in gaps])}
