"""Linear probing before fine-tuning (LP-FT): the new head starts where L2 logistic
regression on the frozen base's features puts it, so that fine-tuning starts from a useful
head instead of distorting the features to fit a random one (Kumar et al. 2022). On 2 CPU
cores that is what makes a 135M-parameter model a usable classifier within minutes
(docs/reward-models.md). ple.rewards.gated fits its probes and gates with the same code.
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch

from ple.errors import UserError
from ple.rewards.training.base_model import pooled_features
from ple.rewards.training.config import RewardTrainConfig
from ple.rewards.training.data import Example

PROBE_L2 = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # the strengths tried; validation picks one


def fit_probe(x, y, seed: int, groups: list | None = None) -> tuple[Any, dict]:
    """L2-regularised logistic regression without intercept on features scaled to unit
    spread. The strength is chosen on a seeded fifth of the `groups` (default: one per row):
    rows of one group — the pairs of one prompt, a pair and its mirror image — are either all
    fitted or all validated, so that validation does not see what was fitted. Returns the
    weight vector for the unscaled features and a description."""
    scale = x.std(0) + 1e-6
    z = x / scale

    def fit(z, y, lam):
        w = torch.zeros(z.shape[1], dtype=z.dtype, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w, y) + lam * w @ w
            loss.backward()
            return loss
        opt.step(closure)
        return w.detach()

    groups = list(range(len(y))) if groups is None else groups
    names = sorted(set(groups), key=str)
    random.Random(seed).shuffle(names)
    held = set(names[:max(1, len(names) // 5)])
    in_val = torch.tensor([g in held for g in groups])
    val, fit_part = in_val.nonzero()[:, 0], (~in_val).nonzero()[:, 0]
    losses = {}
    for lam in PROBE_L2:
        w = fit(z[fit_part], y[fit_part], lam)
        losses[lam] = torch.nn.functional.binary_cross_entropy_with_logits(
            z[val] @ w, y[val]).item()
    lam = min(losses, key=losses.get)
    w = fit(z, y, lam)
    accuracy = ((z @ w > 0).float() == y).float().mean().item()
    return w / scale, {"l2": lam, "fit_accuracy": round(accuracy, 4)}


def init_head_by_probe(cfg: RewardTrainConfig, model, head: str, train: list[Example],
                       encoded: list[list[int]], rejected: list[list[int]] | None,
                       pad_id: int) -> dict:
    """Set the head to the probe fitted on up to --probe-examples training examples: logistic
    regression on the features of a classifier's texts, Bradley–Terry on the feature
    differences of pairs (`rejected` given). Returns what reward_eval.json records of it."""
    started = time.time()
    n = min(cfg.probe_examples, len(train))
    pick = sorted(random.Random(cfg.seed + 3).sample(range(len(train)), n))
    batch = max(cfg.batch_size, 16)
    features = pooled_features(model, head, [encoded[i] for i in pick], batch, pad_id,
                               "linear probe: features")
    if rejected is None:
        x, y = features, torch.tensor([float(train[i].label) for i in pick])
        groups = None
    else:  # Bradley–Terry: P(chosen > rejected) = σ(w·(h_chosen − h_rejected)), mirrored
        diff = features - pooled_features(model, head, [rejected[i] for i in pick], batch,
                                          pad_id, "linear probe: features (rejected)")
        x, y = torch.cat([diff, -diff]), torch.cat([torch.ones(n), torch.zeros(n)])
        groups = [train[i].chosen[0] for i in pick] * 2  # by prompt
    w, info = fit_probe(x.double(), y.double(), cfg.seed, groups)
    module = getattr(model, head)
    if not isinstance(module, torch.nn.Linear):
        raise UserError(f"--base {cfg.base}: its `{head}` head is not one linear layer; give "
                        f"--probe-examples 0")
    with torch.no_grad():  # 2 outputs: logit(1) - logit(0) = w.h; 1 output: r = w.h
        weight = torch.stack([-w / 2, w / 2]) if rejected is None else w[None]
        module.weight.copy_(weight.to(module.weight.dtype))
        if module.bias is not None:
            module.bias.zero_()
    return {"examples": n, **info, "seconds": round(time.time() - started, 1)}
