"""Held-out evaluation of a policy's plain responses, shared by every method."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ple.evaluation.metrics import (assistant_speak_share, distinct_n, mean_and_se, perplexity,
                                    response_kl)
from ple.rewards import RewardModel, checked_scores
from ple.rollout import Prompter, decode, sample
from ple.sequences import pack, response_token_logprobs

SCORE_ROWS = 16


@torch.no_grad()
def evaluate_plain(model, tokenizer, prompter: Prompter, reward: RewardModel,
                   queries: list[str], args, frozen_base=None,
                   batch_size: int | None = None, progress: bool = False,
                   sampler=None) -> dict:
    """Plain responses (no principle) to `queries`: mean reward (n, standard error), their
    perplexity under the base model (the adapter disabled, or `frozen_base` after full
    fine-tuning), distinct-1/2, the share in the assistant register (assistant_speak), and
    the KL of the policy from that base on them (kl_mean, kl_se: mean and standard error
    over responses of response_kl; each sample's own as `kl`). `frozen_base` may be `model`
    itself (an untrained model is its own base): KL 0. The sampling seed is fixed and the
    caller's RNG is left untouched, so evaluating does not change training.

    `args` (a PLEConfig or an EvalConfig) gives seed, max_new_tokens, temperature, top_p and
    top_k. Queries are generated and scored `batch_size` at a time (default: all at once),
    which bounds memory for many. `progress` shows a progress bar. `sampler` is the model
    that samples (ple.sampling_model: a bf16 copy of `model`), default `model` itself."""
    batch_size = batch_size or len(queries)
    prompts = [prompter.ids(q) for q in queries]
    # Several batches are formed from prompts of similar length, which cuts the padding
    # generate pays for; the results are put back in query order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) \
        if batch_size < len(prompts) else list(range(len(prompts)))
    prompts = [prompts[i] for i in order]
    chunks = [slice(i, min(i + batch_size, len(prompts)))
              for i in range(0, len(prompts), batch_size)]
    # Scored SCORE_ROWS at a time whatever the generation batch: logits are rows x length x
    # vocabulary floats, 1.2 GB for 128 IMDb responses of the default model, where the KV
    # cache of generating them is a third of that.
    scored = [slice(i, min(i + SCORE_ROWS, c.stop)) for c in chunks
              for i in range(c.start, c.stop, SCORE_ROWS)]
    # One unit per generated batch, one for scoring, one per batch scored by policy and base.
    bar = tqdm(total=len(chunks) + 1 + len(scored), desc="held-out evaluation", unit="part",
               leave=False, disable=not progress)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed + 1)
        responses = []
        for c in chunks:
            responses += sample(sampler or model, tokenizer, prompts[c], args.max_new_tokens,
                                args.temperature, args.top_p, args.top_k)
            bar.update()
    unsort = sorted(range(len(order)), key=order.__getitem__)
    texts = decode(tokenizer, [responses[i] for i in unsort])
    scores = checked_scores(reward, queries, texts)
    bar.update()
    logp_sum, n_tokens, kl = 0.0, 0, []
    # The log-probs of the policy that generated, dropout off (as `sample` generates), in
    # the same batches as the base's, so the two differ by the weights alone.
    was_training = model.training
    model.eval()
    for c in scored:
        batch = pack(prompts[c], responses[c], tokenizer.pad_token_id)
        policy_logps = response_token_logprobs(model, batch)
        if frozen_base is model:
            token_logps = policy_logps
        elif frozen_base is None:
            with model.disable_adapter():
                token_logps = response_token_logprobs(model, batch)
        else:
            token_logps = response_token_logprobs(frozen_base, batch)
        kl += response_kl(policy_logps, token_logps)
        logp_sum += float(token_logps.sum())
        n_tokens += int(batch["response_mask"].sum())
        bar.update()
    model.train(was_training)
    bar.close()
    kl = [kl[i] for i in unsort]
    mean, se = mean_and_se(scores)
    kl_mean, kl_se = mean_and_se(kl)
    return {"n": len(scores), "reward_mean": mean, "reward_se": se,
            "base_perplexity": perplexity(logp_sum, n_tokens),
            "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "assistant_speak": assistant_speak_share(texts),
            "kl_mean": kl_mean, "kl_se": kl_se,
            "samples": [{"query": q, "response": t, "reward": s, "kl": k}
                        for q, t, s, k in zip(queries, texts, scores, kl)]}


def eval_row(evaluation: dict) -> dict:
    """The numbers of an `evaluate_plain` result as metrics, named eval_* (eval_reward_mean,
    ...); the samples stay out."""
    return {f"eval_{k}": v for k, v in evaluation.items() if k != "samples"}
