"""PPO for language models, one pure function per piece (the PLE paper's own equations live
in ple.losses).

Shapes: B sequences, T response positions. `mask` is 1 at response tokens and 0 at the
padding after a response ends (ple.sequences.pack lays every response out from column 0).
Nothing here touches a model.
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over the entries where `mask` is 1 (0 when there are none)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / sqrt(var + eps) over the masked entries; 0 elsewhere.

    The variance is the unbiased one, as in Ziegler et al. 2019 (lm-human-preferences,
    `utils.whiten`) and TRL's `masked_whiten`, so the result has mean 0 and unbiased variance
    1 over the masked entries. Needs at least two of them (one value has no variance).
    """
    n = mask.sum()
    if n < 2:
        raise ValueError(f"whiten needs at least 2 masked entries, got {int(n)}")
    mean = masked_mean(values, mask)
    var = (((values - mean) * mask) ** 2).sum() / (n - 1)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def kl_penalised_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards [B, T]: r_t = -kl_coef * (log pi(y_t|..) - log pi_ref(y_t|..)), with
    the sequence score R(x, y) [B] added at the last response token.

    The KL-penalised reward of Ziegler et al. 2019 (Eq. 2, "Fine-Tuning Language Models from
    Human Preferences"), applied per token with the score at the end of the episode as in
    Stiennon et al. 2020 ("Learning to summarize from human feedback") and TRL's PPOTrainer.
    The per-token log-ratio is the sampled (k1) estimate of KL(pi || pi_ref). Padding gets 0;
    a row with no response token gets nothing.
    """
    rewards = -kl_coef * (logp - ref_logp) * mask
    lengths = mask.sum(-1).long()
    last = (lengths - 1).clamp(min=0)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += score.to(rewards.dtype) * (lengths > 0).to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation", Eq. 16), over response tokens:

        delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V(s_t)                  (the value target: returns)

    The episode ends at the last response token: V and A after it count as 0, so padding
    contributes nothing (whatever its rewards or values) and gets advantage and return 0.
    Returns (advantages, returns), both [B, T].
    """
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = advantage
        next_value = values[:, t] * mask[:, t]
        next_advantage = advantage
    returns = (advantages + values) * mask
    return advantages, returns


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped surrogate objective of PPO (Schulman et al. 2017, "Proximal Policy
    Optimization Algorithms", Eq. 7), as a loss over tokens:

        r_t = exp(log pi(y_t|..) - log pi_old(y_t|..))
        L   = masked mean of max(-A_t * r_t, -A_t * clip(r_t, 1 - clip, 1 + clip))

    Returns (loss, clip fraction): the share of tokens where the clipped term is the larger
    one, i.e. where clipping removed the gradient (TRL's `pg_clipfrac`).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, clip: float) -> torch.Tensor:
    """The clipped value loss of the PPO reference implementation (OpenAI baselines ppo2, used
    by Ziegler et al. 2019 and TRL): the value may move at most `clip` from the value it had
    at rollout, and the worse of the two errors is taken:

        L_V = 0.5 * masked mean of max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)
    """
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    worst = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(worst, mask)
