"""The paper's equations, one pure function each (Section 3-4 of the paper).

Shapes: B pairs or sequences, T response positions, V vocabulary. Nothing here touches a model.
"""

from __future__ import annotations

import math
import statistics

import torch
from trl.trainer.utils import selective_log_softmax


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(y^j | y^<j, x) for each response token, zero where `mask` is 0.

    `logits[b, j]` are the scores that predict `labels[b, j]`. TRL's selective log-softmax
    forms the log-softmax only at the gathered label, one sequence at a time, so neither a
    B x T x V log-probability tensor nor a B x T x V temporary of the normaliser is
    materialised; callers pass logits for response positions only, never for the prompt.
    """
    return selective_log_softmax(logits, labels) * mask


def sequence_logprob(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_j log pi(y^j | y^<j, x): the inner sum of Eqs. 1 and 4. Shape [B]."""
    return (token_logps * mask).sum(-1)


def normalised_logprob(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The length-normalised log-probability of Eq. 3: sum_j log pi(y^j | ...) / |y|."""
    return sequence_logprob(token_logps, mask) / mask.sum(-1).clamp(min=1)


def sft_loss(logp_sum: torch.Tensor) -> torch.Tensor:
    """Eq. 1: L_sft = -sum_i sum_j log P(y_i^j | y_i^<j, x_i), per example. Shape [B]."""
    return -logp_sum


def rank_loss(better: torch.Tensor, worse: torch.Tensor, hinge: bool = False) -> torch.Tensor:
    """Eq. 3, per pair, on length-normalised log-probs of y' (better) and y (worse).

    The paper's form is linear: -(better - worse). RRHF's original form is the zero-margin
    hinge max(0, worse - better), which stops pushing once the order is right.
    """
    if hinge:
        return torch.relu(worse - better)
    return -(better - worse)


def logistic_rank_loss(better: torch.Tensor, worse: torch.Tensor, ref_better: torch.Tensor,
                       ref_worse: torch.Tensor, beta: float) -> torch.Tensor:
    """Not in the paper: Eq. 3 in DPO's logistic form against a reference model, per pair,
    -log sigmoid(beta * [(better - ref_better) - (worse - ref_worse)]), on summed log-probs
    of y' (better) and y (worse) under the policy and the reference (DPO's form, in which
    the reference's log-prob, itself growing with the length, takes the place of Eq. 3's
    length normalisation)."""
    return -torch.nn.functional.logsigmoid(beta * ((better - ref_better) - (worse - ref_worse)))


def label_weights(s: float, s_prompt: float) -> tuple[float, float]:
    """Eq. 5: w = 2e^s / (e^s + e^s') - 1 and w' = 2e^s' / (e^s + e^s') - 1.

    Written as tanh((s - s') / 2), which is the same number without overflow for large
    scores; hence w' = -w exactly, and both lie in [-1, 1].
    """
    w = math.tanh((s - s_prompt) / 2.0)
    return w, -w


def weighted_sft_loss(w: torch.Tensor, logp_sum: torch.Tensor, w_prompt: torch.Tensor,
                      logp_sum_prompt: torch.Tensor) -> torch.Tensor:
    """Eq. 4, per pair: -(w * sum_j log pi(y^j|..) + w' * sum_j log pi(y'^j|..)).

    Not length-normalised (the paper normalises Eq. 3 only).
    """
    return -(w * logp_sum + w_prompt * logp_sum_prompt)


def positive_weighted_sft_loss(w: torch.Tensor, logp_sum: torch.Tensor, w_prompt: torch.Tensor,
                               logp_sum_prompt: torch.Tensor) -> torch.Tensor:
    """Not in the paper: Eq. 4 with only its positive-weight half, per pair,
    -(max(w, 0) * sum_j log pi(y^j|..) + max(w', 0) * sum_j log pi(y'^j|..)): the better
    response of the pair is pushed up as in Eq. 4, the worse one is not pushed down."""
    return -(w.clamp(min=0) * logp_sum + w_prompt.clamp(min=0) * logp_sum_prompt)


def kl_penalty(token_logps: torch.Tensor, ref_token_logps: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """Not in the paper: a per-response estimate of KL(pi || pi_ref) from its sampled tokens,
    Schulman's k3, exp(r - l) - (r - l) - 1 with l, r the policy's and the reference's
    log-probs of each token, averaged over the response's tokens (GRPO's penalty, TRL's
    `beta`). Non-negative, 0 where the two agree; on responses sampled from pi its gradient
    pulls pi toward pi_ref. Shape [B]."""
    delta = (ref_token_logps - token_logps) * mask
    per_token = (torch.exp(delta) - delta - 1) * mask
    return per_token.sum(-1) / mask.sum(-1).clamp(min=1)


def is_rank_pair(s: float, s_prompt: float, tau: float) -> bool:
    """The branch rule of Eqs. 3-4: the ranking loss iff s' - s > tau, else weighted SFT."""
    return s_prompt - s > tau


def threshold(tau0: float, alpha: float, step: int) -> float:
    """Eq. 7 unrolled: the threshold step t (1-based) trains with, tau_t = tau0 * alpha^(t-1).

    Algorithm 1 decays tau after the updates of a step, so step 1 trains with tau0.
    """
    return tau0 * alpha ** (step - 1)


def gap_spread(gaps: list[float]) -> float:
    """Not in the paper: the spread of the reward gaps s' - s of some pairs (their sample
    standard deviation), the unit of tau0 when it is given relative to the gaps a task has."""
    return statistics.stdev(gaps)


def ple_loss(rank: torch.Tensor, wsft: torch.Tensor, is_rank: torch.Tensor,
             anchor: torch.Tensor | None = None, anchor_coef: float = 0.0,
             kl: torch.Tensor | None = None, kl_coef: float = 0.0,
             wsft_coef: float = 1.0) -> dict:
    """Eq. 6: L = L_rank + L_weighted-sft over a mini-batch of pairs.

    Each pair contributes to exactly one term, chosen by `is_rank` (bool, [B]). The paper's
    sums are divided by the number of pairs in the mini-batch, so the learning rate does not
    depend on the batch size. `wsft_coef` (not in the paper, which has 1) scales
    L_weighted-sft. `anchor` (per pair, optional) is the non-paper SFT term on the
    better response, scaled by `anchor_coef`; `kl` (per pair, optional) the non-paper
    penalty toward the reference model (kl_penalty), scaled by `kl_coef`. Each term is
    returned as it enters the sum, scaled.
    """
    n = max(int(is_rank.numel()), 1)
    l_rank = torch.where(is_rank, rank, torch.zeros_like(rank)).sum() / n
    l_wsft = wsft_coef * torch.where(is_rank, torch.zeros_like(wsft), wsft).sum() / n
    total = l_rank + l_wsft
    l_anchor = torch.zeros_like(total)
    if anchor is not None and anchor_coef > 0:
        l_anchor = anchor_coef * anchor.mean()
        total = total + l_anchor
    l_kl = torch.zeros_like(total)
    if kl is not None and kl_coef > 0:
        l_kl = kl_coef * kl.mean()
        total = total + l_kl
    return {"loss": total, "loss_rank": l_rank, "loss_wsft": l_wsft, "loss_anchor": l_anchor,
            "loss_kl": l_kl}
