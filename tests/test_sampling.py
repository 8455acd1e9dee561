"""Sampling: the inverse-CDF sampler draws from generate's distribution, and the bf16 sampling
copy is the policy's current weights (LoRA merged), without touching the policy."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from peft import get_peft_model

from conftest import run_ple
from ple.models import load_policy, paper_lora
from ple.rollout import InverseCDFSampler, sample
from ple.sampling_model import SamplingModel, merged_weights, sampling_model


def draw_frequencies(logits: torch.Tensor, n: int, **warp) -> torch.Tensor:
    """Frequencies of n draws of the sampler on one row of logits (n rows at once)."""
    sampler = InverseCDFSampler(**{"temperature": 1.0, "top_p": 1.0, "top_k": 0, **warp})
    scores = sampler(None, logits.expand(n, -1).clone())
    assert torch.isinf(scores).sum(-1).eq(logits.numel() - 1).all()  # one token a row
    return torch.bincount(scores.argmax(-1), minlength=logits.numel()).double() / n


@pytest.mark.parametrize("warp, expected", [
    ({}, [0.5, 0.25, 0.125, 0.0625, 0.0625]),
    ({"temperature": 0.5}, [64 / 86, 16 / 86, 4 / 86, 1 / 86, 1 / 86]),  # p squared
    ({"top_k": 2}, [2 / 3, 1 / 3, 0, 0, 0]),
    ({"top_p": 0.7}, [2 / 3, 1 / 3, 0, 0, 0]),  # 0.5 + 0.25 reach 0.7
])
def test_inverse_cdf_sampler_draws_the_warped_distribution(warp, expected):
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625])
    found = draw_frequencies(probs.log(), 40_000, **warp)
    expected = torch.tensor(expected, dtype=torch.float64)
    # 40,000 draws: a frequency's standard error is at most 0.0025; 5 SE apart is a bug.
    assert (found - expected).abs().max() < 0.0125
    assert (found[expected == 0] == 0).all()


def test_seeded_sampling_repeats_and_a_new_seed_differs(tiny):
    model, tokenizer = tiny
    prompts = [tokenizer("a movie about")["input_ids"], tokenizer("the plot")["input_ids"]]
    draws = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        draws.append(sample(model, tokenizer, prompts, 12, 1.0, 1.0, 0))
    assert draws[0] == draws[1] != draws[2]


def lora_policy():
    """The tiny model with a LoRA adapter whose B is not zero, so the merge matters."""
    model, tokenizer = load_policy("tiny", seed=0)
    torch.manual_seed(3)
    policy = get_peft_model(copy.deepcopy(model), paper_lora())
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model, policy, tokenizer


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_merged_weights_are_the_lora_policy_to_float_rounding():
    base, policy, tokenizer = lora_policy()
    plain = copy.deepcopy(base)
    plain.load_state_dict(merged_weights(policy), strict=False)
    ids = torch.tensor([tokenizer("it was a fine film, and")["input_ids"]])
    assert torch.allclose(logits(plain, ids), logits(policy, ids), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits(base, ids), logits(policy, ids), atol=1e-3)


def test_bf16_copy_follows_the_policy_and_leaves_it_untouched():
    _, policy, tokenizer = lora_policy()
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    sampling = SamplingModel("bfloat16")
    ids = torch.tensor([tokenizer("it was a fine film, and")["input_ids"]])
    first = logits(sampling.of(policy), ids)
    assert sampling.copy.dtype == torch.bfloat16
    assert torch.allclose(first, logits(policy, ids), atol=0.05)  # bf16's 8 mantissa bits
    assert all(torch.equal(p, before[n]) for n, p in policy.named_parameters())
    with torch.no_grad():  # as an optimizer step would
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.add_(0.1)
    again = logits(sampling.of(policy), ids)
    assert torch.allclose(again, logits(policy, ids), atol=0.05)
    assert not torch.allclose(again, first, atol=0.05)


def test_float32_sampling_is_the_policy_itself_and_auto_resolves_per_device():
    _, policy, _ = lora_policy()
    assert SamplingModel("float32").of(policy) is policy
    assert sampling_model("float32", torch.device("cpu")).dtype == "float32"
    assert sampling_model("auto", torch.device("cpu"), sharded=True).dtype == "float32"


def test_config_yaml_records_the_generation_dtype_that_ran(tmp_path):
    result = run_ple("train", "--model", "tiny", "--max-steps", "1", "--batch-size", "2",
                     "--output-dir", str(tmp_path), "--generation-dtype", "float32")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["generation_dtype"] \
        == "float32"


def test_bfloat16_under_deepspeed_is_refused_in_one_line():
    from ple.errors import UserError

    with pytest.raises(UserError, match="generation_dtype"):
        sampling_model("bfloat16", torch.device("cpu"), sharded=True)
