"""Held-out evaluation of a policy's plain responses, shared by every method."""

from __future__ import annotations

import torch

from ple.config import PLEConfig
from ple.evaluation.metrics import distinct_n, mean_and_se, perplexity
from ple.rewards import RewardModel, checked_scores
from ple.rollout import Prompter, decode, sample
from ple.sequences import pack, response_token_logprobs


@torch.no_grad()
def evaluate_plain(model, tokenizer, prompter: Prompter, reward: RewardModel,
                   queries: list[str], args: PLEConfig, frozen_base=None) -> dict:
    """Plain responses (no principle) to `queries`: mean reward (n, standard error), their
    perplexity under the base model (the adapter disabled, or `frozen_base` after full
    fine-tuning), and distinct-1/2. The sampling seed is fixed and the caller's RNG is left
    untouched, so evaluating does not change training."""
    with torch.random.fork_rng():
        torch.manual_seed(args.seed + 1)
        prompts = [prompter.ids(q) for q in queries]
        responses = sample(model, tokenizer, prompts, args.max_new_tokens, args.temperature,
                           args.top_p, args.top_k)
    texts = decode(tokenizer, responses)
    scores = checked_scores(reward, queries, texts)
    batch = pack(prompts, responses, tokenizer.pad_token_id)
    if frozen_base is None:
        with model.disable_adapter():
            token_logps = response_token_logprobs(model, batch)
    else:
        token_logps = response_token_logprobs(frozen_base, batch)
    mean, se = mean_and_se(scores)
    return {"n": len(scores), "reward_mean": mean, "reward_se": se,
            "base_perplexity": perplexity(float(token_logps.sum()),
                                          int(batch["response_mask"].sum())),
            "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "samples": [{"query": q, "response": t, "reward": s}
                        for q, t, s in zip(queries, texts, scores)]}
