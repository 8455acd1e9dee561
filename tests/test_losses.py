"""Each equation against numbers computed by hand."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ple import losses
from ple.sequences import pack

finite = st.floats(min_value=-50, max_value=50, allow_nan=False)


def test_token_logprobs_masks_padding_and_matches_log_softmax():
    logits = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
                           [[3.0, 1.0, 0.0], [1.0, 1.0, 5.0]]])
    labels = torch.tensor([[2, 1], [0, 2]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    got = losses.token_logprobs(logits, labels, mask)
    by_hand = [[3 - math.log(math.e + math.e ** 2 + math.e ** 3), 0.0],
               [3 - math.log(math.e ** 3 + math.e + 1), 5 - math.log(2 * math.e + math.e ** 5)]]
    assert torch.allclose(got, torch.tensor(by_hand), atol=1e-6)


def test_sequence_and_normalised_logprob():
    token_logps = torch.tensor([[-1.0, -2.0, 0.0], [-3.0, -1.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert losses.sequence_logprob(token_logps, mask).tolist() == [-3.0, -6.0]
    assert losses.normalised_logprob(token_logps, mask).tolist() == [-1.5, -2.0]


def test_sft_loss_eq1():
    assert losses.sft_loss(torch.tensor([-3.0, -0.5])).tolist() == [3.0, 0.5]


def test_rank_loss_eq3_linear_and_hinge():
    better, worse = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    assert losses.rank_loss(better, worse).tolist() == [-1.0, 2.0]
    assert losses.rank_loss(better, worse, hinge=True).tolist() == [0.0, 2.0]


def test_logistic_rank_loss_is_dpos_by_hand_and_pushes_better_up():
    better = torch.tensor([-10.0, -4.0], requires_grad=True)
    worse = torch.tensor([-12.0, -4.0], requires_grad=True)
    ref_better, ref_worse = torch.tensor([-11.0, -4.0]), torch.tensor([-11.0, -4.0])
    got = losses.logistic_rank_loss(better, worse, ref_better, ref_worse, beta=0.5)
    # Pair 0: log-ratios +1 and -1, margin 2; pair 1: the reference itself, margin 0.
    assert got[0].item() == pytest.approx(math.log(1 + math.exp(-0.5 * 2)))
    assert got[1].item() == pytest.approx(math.log(2))
    got.sum().backward()
    assert (better.grad < 0).all() and (worse.grad > 0).all()  # descent: y' up, y down
    # At margin 0 the slope is beta / 2 on each side.
    assert better.grad[1].item() == pytest.approx(-0.25)


def test_label_weights_eq5_by_hand():
    s, s_prompt = 0.3, 1.1
    w, w_prompt = losses.label_weights(s, s_prompt)
    e, e_p = math.exp(s), math.exp(s_prompt)
    assert w == pytest.approx(2 * e / (e + e_p) - 1)
    assert w_prompt == pytest.approx(2 * e_p / (e + e_p) - 1)
    assert w + w_prompt == 0.0


@given(finite, finite)
def test_label_weights_bounded_and_antisymmetric(s, s_prompt):
    w, w_prompt = losses.label_weights(s, s_prompt)
    assert -1.0 <= w <= 1.0 and w + w_prompt == 0.0
    assert (w > 0) == (s > s_prompt) or s == s_prompt or abs(w) < 1e-12


def test_label_weights_do_not_overflow():
    assert losses.label_weights(800.0, -800.0) == (1.0, -1.0)


def test_weighted_sft_eq4_by_hand():
    got = losses.weighted_sft_loss(torch.tensor([0.5]), torch.tensor([-4.0]),
                                   torch.tensor([-0.5]), torch.tensor([-2.0]))
    assert got.tolist() == [-(0.5 * -4.0 + -0.5 * -2.0)]


def test_positive_half_of_eq4_by_hand_drops_only_the_negative_term():
    w = torch.tensor([0.5, -0.25, 0.0])
    logp, logp_prompt = torch.tensor([-4.0, -3.0, -1.0]), torch.tensor([-2.0, -6.0, -1.0])
    got = losses.positive_weighted_sft_loss(w, logp, -w, logp_prompt)
    # Pair 0: y is the better (w 0.5); pair 1: y' is (w' 0.25); pair 2: a tie, no push.
    assert got.tolist() == [-(0.5 * -4.0), -(0.25 * -6.0), 0.0]
    full = losses.weighted_sft_loss(w, logp, -w, logp_prompt)
    assert full.tolist() == [-(0.5 * -4.0 - 0.5 * -2.0), -(-0.25 * -3.0 + 0.25 * -6.0), 0.0]


def test_branch_rule_is_strict():
    assert losses.is_rank_pair(0.0, 0.3, 0.2)
    assert not losses.is_rank_pair(0.0, 0.2, 0.2)   # at tau: similar quality
    assert not losses.is_rank_pair(0.5, 0.1, 0.2)


def test_threshold_eq7_schedule():
    assert losses.threshold(0.2, 0.9, 1) == 0.2
    assert losses.threshold(0.2, 0.9, 2) == pytest.approx(0.18)
    assert losses.threshold(0.2, 0.9, 4) == pytest.approx(0.2 * 0.9 ** 3)


def test_gap_spread_is_the_sample_standard_deviation():
    assert losses.gap_spread([1.0, 3.0]) == pytest.approx(math.sqrt(2.0))
    assert losses.gap_spread([0.5, 0.5, 0.5]) == 0.0
    # tau_scale spread: the threshold of step 3 with tau0 = 1 spread of 0.5 and alpha 0.9.
    assert losses.threshold(1.0 * losses.gap_spread([0.0, 0.5, 1.0]), 0.9, 3) == \
        pytest.approx(0.5 * 0.81)


def test_ple_loss_eq6_routes_each_pair_to_one_term():
    rank = torch.tensor([1.0, 10.0, 100.0])
    wsft = torch.tensor([2.0, 20.0, 200.0])
    is_rank = torch.tensor([True, False, True])
    out = losses.ple_loss(rank, wsft, is_rank)
    assert out["loss_rank"].item() == pytest.approx(101.0 / 3)
    assert out["loss_wsft"].item() == pytest.approx(20.0 / 3)
    assert out["loss"].item() == pytest.approx(121.0 / 3)
    anchored = losses.ple_loss(rank, wsft, is_rank, torch.tensor([3.0, 3.0, 6.0]), 0.5)
    assert anchored["loss"].item() == pytest.approx(121.0 / 3 + 0.5 * 4.0)
    weighted = losses.ple_loss(rank, wsft, is_rank, wsft_coef=0.3)
    assert weighted["loss_wsft"].item() == pytest.approx(0.3 * 20.0 / 3)
    assert weighted["loss"].item() == pytest.approx((101.0 + 0.3 * 20.0) / 3)


def test_kl_penalty_k3_by_hand_and_its_pull_toward_the_reference():
    policy = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    reference = torch.tensor([[-1.5, -1.0, -9.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # row 0: a padded third token
    kl = losses.kl_penalty(policy, reference, mask)
    k3 = lambda d: math.exp(d) - d - 1  # noqa: E731
    assert kl[0].item() == pytest.approx((k3(-0.5) + k3(1.0)) / 2)
    assert kl[1].item() == 0.0  # the reference's own log-probs: no penalty
    kl.sum().backward()
    # Above the reference the gradient is positive (descent lowers the log-prob), below it
    # negative, at padding zero.
    assert policy.grad[0, 0] > 0 > policy.grad[0, 1] and policy.grad[0, 2] == 0
    out = losses.ple_loss(torch.zeros(2), torch.zeros(2), torch.tensor([True, False]),
                          kl=kl.detach(), kl_coef=0.1)
    assert out["loss_kl"].item() == pytest.approx(0.1 * kl.mean().item())
    assert out["loss"].item() == pytest.approx(out["loss_kl"].item())


@given(st.lists(finite, min_size=2, max_size=6), st.lists(finite, min_size=2, max_size=6))
def test_losses_finite_for_finite_inputs(a, b):
    n = min(len(a), len(b))
    x, y = torch.tensor(a[:n]), torch.tensor(b[:n])
    w = torch.tensor([losses.label_weights(p, q)[0] for p, q in zip(a, b)][:n])
    for value in (losses.rank_loss(x, y), losses.rank_loss(x, y, hinge=True),
                  losses.logistic_rank_loss(x, y, y, x, beta=0.1),
                  losses.weighted_sft_loss(w, x, -w, y),
                  losses.positive_weighted_sft_loss(w, x, -w, y)):
        assert torch.isfinite(value).all()


def test_pack_layout_and_masks():
    batch = pack([[5, 6], [7]], [[8], [9, 10, 11]], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 8, 0, 0], [0, 7, 9, 10, 11]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[8, 0, 0], [9, 10, 11]]
    assert batch["response_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]


def test_response_logprobs_ignore_prompt_and_padding_length():
    """The log-prob of a response must not depend on how much padding its batch needed."""
    from ple.models import tiny_model
    from ple.sequences import response_token_logprobs

    model = tiny_model(vocab_size=50, seed=0).eval()
    prompt, response = [3, 4, 5], [6, 7]
    alone = response_token_logprobs(model, pack([prompt], [response], pad_id=0))
    padded = response_token_logprobs(
        model, pack([prompt, [1] * 9], [response, [8, 9, 10, 11, 12]], pad_id=0))
    assert torch.allclose(alone[0], padded[0, :2], atol=1e-5)
    assert padded[0, 2:].abs().sum() == 0
    # And it equals the full-sequence log-softmax at the response positions.
    full = torch.log_softmax(model(torch.tensor([prompt + response])).logits, -1)[0]
    by_hand = torch.stack([full[2, 6], full[3, 7]])
    assert torch.allclose(alone[0], by_hand, atol=1e-5)


@given(st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=5),
       st.integers(min_value=0, max_value=2**31 - 1))
def test_masking_invariant_to_padding_length(length, extra, seed):
    """Appending padding positions (any logits, any labels, mask 0) changes no sum or mean."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, length + extra, 7, generator=g) * 5
    labels = torch.randint(0, 7, (1, length + extra), generator=g)
    mask = torch.zeros(1, length + extra)
    mask[0, :length] = 1
    padded = losses.token_logprobs(logits, labels, mask)
    trimmed = losses.token_logprobs(logits[:, :length], labels[:, :length], mask[:, :length])
    assert torch.allclose(losses.sequence_logprob(padded, mask),
                          losses.sequence_logprob(trimmed, mask[:, :length]))
    assert torch.allclose(losses.normalised_logprob(padded, mask),
                          losses.normalised_logprob(trimmed, mask[:, :length]))
