"""DPO baseline with TRL's DPOTrainer. With LoRA the reference is the model with its adapter
disabled (TRL's default for a PEFT model), so no second copy is kept.

Pairs: HH chosen/rejected and TL;DR comparisons are human preferences. IMDb has none, so
they are made as in the paper's online baselines: for each query, the initial policy samples
two plain responses (one generate call per `batch_size` queries, as the online methods
sample a step), the reward
model scores them against the plain query, the higher-scored one is `chosen`; pairs with
equal scores carry no preference and are dropped, and counted. Only the queries that
`max_steps` will train on get pairs (a seeded draw of them), so the generation budget is
2 x max_steps x batch_size x gradient_accumulation_steps, like RLOO's with two generations.
"""

from __future__ import annotations

import logging
import random

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from ple.baselines.trl_run import TRLRun
from ple.errors import UserError
from ple.rewards import checked_scores
from ple.rollout import decode, sample

log = logging.getLogger(__name__)


def queries_to_pair(args, queries: list[str]) -> list[str]:
    """The queries DPO's optimizer steps will consume, one pair each: max_steps x batch_size
    x gradient_accumulation_steps of them, drawn with the run's seed (all, in order, when
    there are no more). Pairs beyond them would be sampled and scored and never trained on."""
    n = args.max_steps * args.batch_size * args.gradient_accumulation_steps
    if n >= len(queries):
        return queries
    log.info("dpo: sampling pairs for %d of the %d queries, the ones max_steps %d x batch_size "
             "%d x gradient_accumulation_steps %d train on", n, len(queries), args.max_steps,
             args.batch_size, args.gradient_accumulation_steps)
    return random.Random(args.seed).sample(queries, n)


def generated_pairs(run: TRLRun, queries: list[str]) -> tuple[list, list[dict]]:
    """(query, chosen, rejected) triples from the policy's own samples, and their rows for
    samples.jsonl. Counts the generation budget in run.totals."""
    a = run.args
    prompts = [run.prompter.ids(q) for q in queries for _ in range(2)]
    # One call for every query would hold all their caches and logits at once: 504 IMDb
    # queries took over 15 GB and were killed on a 24 GB machine.
    size = 2 * a.batch_size
    sampler = run.sampling.of(run.model)
    responses = [r for i in range(0, len(prompts), size)
                 for r in sample(sampler, run.tokenizer, prompts[i:i + size],
                                 a.max_new_tokens, a.temperature, a.top_p, a.top_k)]
    run.totals["generated_responses"] += len(responses)
    run.totals["generated_tokens"] += sum(len(r) for r in responses)
    texts = decode(run.tokenizer, responses)
    scores = checked_scores(run.reward, [q for q in queries for _ in range(2)], texts)
    pairs, rows = [], []
    for i, query in enumerate(queries):
        (s1, t1), (s2, t2) = (scores[2 * i], texts[2 * i]), (scores[2 * i + 1], texts[2 * i + 1])
        if s1 == s2:
            continue
        (sc, chosen), (sr, rejected) = ((s1, t1), (s2, t2)) if s1 > s2 else ((s2, t2), (s1, t1))
        pairs.append((query, chosen, rejected))
        rows.append({"query": query, "chosen": chosen, "rejected": rejected,
                     "reward_chosen": sc, "reward_rejected": sr})
    return pairs, rows


def train_dpo(run: TRLRun, examples: list) -> dict:
    """DPO on human preference pairs (query, chosen, rejected), or on pairs generated for
    queries (IMDb, which has no human pairs: ple.training.data_kind)."""
    pairs, rows = examples, []
    if examples and isinstance(examples[0], str):  # queries: the pairs are sampled here
        queries = queries_to_pair(run.args, examples)
        pairs, rows = generated_pairs(run, queries)
        dropped = len(queries) - len(pairs)
        if dropped:
            log.warning("dropped %d of %d generated pairs with equal rewards", dropped,
                        len(queries))
        if not pairs:
            raise UserError("method dpo: every generated pair had equal rewards; no preference "
                            "to learn from")
    dataset = Dataset.from_list([{"prompt": run.prompt(q), "chosen": c, "rejected": r}
                                 for q, c, r in pairs])
    beta = {} if run.args.beta is None else {"beta": run.args.beta}
    return run.run(DPOTrainer, DPOConfig, dataset, samples=rows, **beta,
                   max_length=run.args.max_prompt_tokens + run.args.max_new_tokens)
