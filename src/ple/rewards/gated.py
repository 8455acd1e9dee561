"""A preference reward gated by the kind of request: one Bradley–Terry probe per data file and
a gate that tells from the text which file's requests it resembles (issue 16).

Why: HH's two subsets prefer opposite things. On harmless-base the better response to a
harmful request declines (shorter, evasive); on helpful-base the better response helps
(longer, compliant). One probe on both is at chance on harmless pairs (0.49), because what
one subset rewards the other penalises; a probe on harmless pairs alone scores 0.37 on
helpful ones. Which preference applies depends on the request, so the reward learns both
and lets the request decide (measured by benchmarks/hh_reward_probe.py, docs/reward-models.md).

The saved model is the frozen base with a linear head of 2N outputs for N data files: N
scores r_k and N gate logits g_k (the head has no bias, so the gate's intercepts are in
ple_reward.json). R(x, y) = Σ_k p_k r_k with p_k = σ(g_k + b_k) / Σ_j σ(g_j + b_j).
"""

from __future__ import annotations

import time
from dataclasses import asdict

from ple.errors import UserError
from ple.rewards.training.base_model import (encode, head_name, load_base_model,
                                             load_base_tokenizer, pooled_features)
from ple.rewards.training.config import RewardTrainConfig
from ple.rewards.training.data import data_sources, split_examples
from ple.rewards.training.metrics import pairwise_accuracy, per_source_accuracy
from ple.rewards.training.probe import fit_probe
from ple.rewards.training.save import check_output_dir, save_reward_model


def gated_reward(logits, gate_bias):
    """R = Σ_k p_k r_k, p_k = σ(g_k + b_k) / Σ_j σ(g_j + b_j), from logits (n, 2N): the N
    scores, then the N gate logits."""
    import torch

    n = len(gate_bias)
    scores, gates = logits[:, :n], logits[:, n:]
    weights = torch.sigmoid(gates + torch.as_tensor(gate_bias, dtype=logits.dtype))
    return (weights * scores).sum(-1) / weights.sum(-1)


def fit_bradley_terry(chosen, rejected, seed: int, groups: list):
    """The probe w with P(chosen ≻ rejected) = σ(w·(h_c − h_r)), fitted on the pairs and
    their mirror images (so it needs no intercept)."""
    import torch

    diff = (chosen - rejected).double()
    n = len(diff)
    return fit_probe(torch.cat([diff, -diff]), torch.cat([torch.ones(n), torch.zeros(n)]).double(),
                     seed, groups * 2)


def fit_gate(features, is_source, seed: int, groups: list):
    """Logistic regression P(text is of this source) = σ(w·h + b), fitted with the probe's
    code on the features mirrored by the label and a constant feature. Returns (w, b, info)."""
    import torch

    x = torch.cat([features, torch.ones(len(features), 1)], 1).double()
    sign = (2 * is_source.double() - 1)[:, None]
    n = len(x)
    w, info = fit_probe(torch.cat([x * sign, -x * sign]),
                        torch.cat([torch.ones(n), torch.zeros(n)]).double(), seed, groups * 2)
    return w[:-1], w[-1].item(), info


def train_gated_preference(cfg: RewardTrainConfig) -> dict:
    """Fit the probes and gates on the frozen base's features of the training pairs, measure
    pairwise accuracy on the held-out pairs of each file, save. Returns what
    reward_eval.json holds (the keys of `ple reward train`'s, and the gate's accuracy)."""
    import torch

    cfg.check()
    check_output_dir(cfg)
    if cfg.kind != "preference" or cfg.eval_data is not None or len(data_sources(cfg)) < 2:
        raise UserError("a gated reward needs --kind preference and two or more --data files, "
                        "each holding out its own part")
    train, held_out, dropped = split_examples(cfg)
    sources = sorted({e.source for e in train})
    started = time.time()
    torch.manual_seed(cfg.seed)
    tokenizer = load_base_tokenizer(cfg.base, cfg.truncation_side)
    model = load_base_model(cfg.base, 2 * len(sources), tokenizer, cfg.seed)
    head, pad_id, batch = head_name(model), tokenizer.pad_token_id, max(cfg.batch_size, 16)
    module = getattr(model, head)
    if not isinstance(module, torch.nn.Linear):
        raise UserError(f"--base {cfg.base}: its `{head}` head is not one linear layer")

    def features(examples, side, name):
        encoded = encode(tokenizer, cfg, [getattr(e, side) for e in examples])
        return pooled_features(model, head, encoded.ids, batch, pad_id,
                               f"{name}: {side}").double(), encoded.truncated

    (chosen, cut_c), (rejected, cut_r) = (features(train, s, "features") for s in
                                          ("chosen", "rejected"))
    groups = [e.chosen[0] for e in train]  # by prompt: validation never sees a fitted prompt
    scores, gates, bias, fits = [], [], [], {}
    for source in sources:
        rows = [i for i, e in enumerate(train) if e.source == source]
        w, info = fit_bradley_terry(chosen[rows], rejected[rows], cfg.seed,
                                    [groups[i] for i in rows])
        is_source = torch.tensor([e.source == source for e in train])
        g, b, gate_info = fit_gate(chosen, is_source, cfg.seed, groups)
        scores.append(w)
        gates.append(g)
        bias.append(b)
        fits[source] = {"probe": info, "gate": gate_info, "train_pairs": len(rows)}
    with torch.no_grad():
        module.weight.copy_(torch.stack(scores + gates).to(module.weight.dtype))
    train_seconds = time.time() - started

    started = time.time()
    h_chosen, eval_cut_c = features(held_out, "chosen", "held out")
    h_rejected, eval_cut_r = features(held_out, "rejected", "held out")
    weight = module.weight.double()
    metric, correct = pairwise_accuracy(gated_reward(h_chosen @ weight.T, bias),
                                        gated_reward(h_rejected @ weight.T, bias))
    n = len(sources)
    gate_pick = (h_chosen @ weight[n:].T + torch.tensor(bias).double()).argmax(-1)
    truth = torch.tensor([sources.index(e.source) for e in held_out])
    result = {
        "kind": "preference", "combine": "gated", **metric,
        "per_source": per_source_accuracy(held_out, correct.tolist()),
        "gate_accuracy": (gate_pick == truth).float().mean().item(),
        "n_train": len(train), "n_eval": len(held_out), "invalid_pairs_dropped": dropped,
        "eval_source": f"{cfg.eval_fraction:g} of each of {cfg.data} (seed {cfg.seed})",
        "train_texts_truncated": cut_c + cut_r, "eval_texts_truncated": eval_cut_c + eval_cut_r,
        "texts_per_example": 2, "max_length": cfg.max_length,
        "truncation_side": cfg.truncation_side, "steps": 0, "fits": fits,
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.time() - started, 1),
        "config": asdict(cfg),
    }
    save_reward_model(cfg, model, tokenizer, result,
                      info={"reward": "the gated sum of the scores", "combine": "gated",
                            "sources": sources, "gate_bias": bias})
    return result
