"""PPO's pieces (ple.baselines.ppo_losses) against numbers computed by hand."""

import math

import pytest
import torch

from ple.baselines.ppo_losses import (clipped_policy_loss, clipped_value_loss, gae,
                                      kl_penalised_rewards, whiten)


def close(got: torch.Tensor, expected) -> bool:
    return torch.allclose(got, torch.tensor(expected), atol=1e-6)


def test_gae_three_tokens_by_hand():
    # gamma = 0.9, lambda = 0.5; r = (0, 0.5, 1), V = (0.2, 0.4, 0.6); after t = 2 the
    # episode has ended, so V(s_3) = 0 and A_3 = 0.
    #   t=2: delta = 1.0 + 0.9*0   - 0.6 = 0.4    A = 0.4
    #   t=1: delta = 0.5 + 0.9*0.6 - 0.4 = 0.64   A = 0.64 + 0.9*0.5*0.4  = 0.82
    #   t=0: delta = 0.0 + 0.9*0.4 - 0.2 = 0.16   A = 0.16 + 0.9*0.5*0.82 = 0.529
    # returns = A + V = (0.729, 1.22, 1.0)
    rewards = torch.tensor([[0.0, 0.5, 1.0]])
    values = torch.tensor([[0.2, 0.4, 0.6]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.5)
    assert close(advantages, [[0.529, 0.82, 0.4]])
    assert close(returns, [[0.729, 1.22, 1.0]])


def test_gae_padding_gets_nothing_and_changes_nothing():
    # The same response followed by two padding positions with junk rewards and values, and a
    # one-token response beside it: A = 2.0 - 0.5 = 1.5, R = 2.0.
    rewards = torch.tensor([[0.0, 0.5, 1.0, 5.0, -7.0], [2.0, 3.0, 3.0, 3.0, 3.0]])
    values = torch.tensor([[0.2, 0.4, 0.6, 3.0, 9.0], [0.5, 8.0, 8.0, 8.0, 8.0]])
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert close(advantages, [[0.529, 0.82, 0.4, 0, 0], [1.5, 0, 0, 0, 0]])
    assert close(returns, [[0.729, 1.22, 1.0, 0, 0], [2.0, 0, 0, 0, 0]])


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards, values = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.5, 0.25, 0.0]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert advantages.tolist() == [[5.5, 4.75, 3.0]]
    assert returns.tolist() == [[6.0, 5.0, 3.0]]


def _ratio(r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, old_logp) whose ratio is r; logp requires grad."""
    return torch.tensor([[math.log(r)]], requires_grad=True), torch.tensor([[0.0]])


@pytest.mark.parametrize("ratio, advantage, loss, clipfrac, grad", [
    (1.1, 2.0, -2.2, 0.0, -2.2),   # inside [0.8, 1.2]: -A r, gradient -A r
    (1.5, 1.0, -1.2, 1.0, 0.0),    # above, A > 0: clipped to -A (1 + 0.2), no gradient
    (0.5, -1.0, 0.8, 1.0, 0.0),    # below, A < 0: clipped to -A (1 - 0.2), no gradient
    (1.5, -1.0, 1.5, 0.0, 1.5),    # above, A < 0: the unclipped term is the larger (pessimistic)
])
def test_clipped_policy_loss_regimes_by_hand(ratio, advantage, loss, clipfrac, grad):
    logp, old = _ratio(ratio)
    got, frac = clipped_policy_loss(logp, old, torch.tensor([[advantage]]), torch.ones(1, 1),
                                    clip=0.2)
    got.backward()
    assert got.item() == pytest.approx(loss)
    assert frac.item() == clipfrac
    # d/dlogp of -A r = -A r (r = exp(logp - old)).
    assert logp.grad.item() == pytest.approx(grad)


def test_clipped_policy_loss_is_a_masked_mean_over_tokens():
    logp = torch.log(torch.tensor([[1.1, 1.5, 0.5, 9.0]]))
    advantages = torch.tensor([[2.0, 1.0, -1.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, frac = clipped_policy_loss(logp, torch.zeros(1, 4), advantages, mask, clip=0.2)
    assert loss.item() == pytest.approx((-2.2 - 1.2 + 0.8) / 3)
    assert frac.item() == pytest.approx(2 / 3)


def test_clipped_value_loss_by_hand():
    # Row 0: V moved 1.0 -> 1.5, R = 2: unclipped (1.5-2)^2 = 0.25, clipped V = 1.2,
    #        (1.2-2)^2 = 0.64; the larger is 0.64.
    # Row 1: V moved 1.0 -> 0.9 (inside the clip), R = 0: 0.81 both ways.
    # Padding (row 1, second position) is ignored. Loss = 0.5 * (0.64 + 0.81) / 2 = 0.3625.
    values = torch.tensor([[1.5, 0.0], [0.9, 50.0]])
    old = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0], [0.0, -50.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert clipped_value_loss(values, old, returns, mask, clip=0.2).item() == \
        pytest.approx(0.3625)


def test_whiten_masked_mean_zero_unit_variance():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, -100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    got = whiten(values, mask)
    # mean 2.5, unbiased variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    s = math.sqrt(5 / 3)
    assert close(got, [[-1.5 / s, -0.5 / s, 0.5 / s], [1.5 / s, 0, 0]])
    kept = got[mask.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert kept.var().item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        whiten(torch.tensor([3.0, 5.0]), torch.tensor([1.0, 0.0]))


def test_kl_penalised_rewards_put_the_score_at_the_last_real_token():
    # kl_coef 0.1. Row 0 (3 tokens): -0.1 * (0.5, 0, -1) = (-0.05, 0, 0.1), + 1.0 at t = 2.
    # Row 1 (1 token, then padding): -0.1 * 1 = -0.1, + 2.0 at t = 0; padding gets 0.
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -9.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    got = kl_penalised_rewards(torch.tensor([1.0, 2.0]), logp, ref, mask, kl_coef=0.1)
    assert close(got, [[-0.05, 0.0, 1.1], [1.9, 0.0, 0.0]])
