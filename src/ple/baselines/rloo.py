"""RLOO (Ahmadian et al. 2024) with TRL's RLOOTrainer: the maintained online-RL baseline.

Two responses per query (TRL's default `num_generations`), each baselined by the other's
reward; KL to the adapter-disabled reference weighted by `beta` (TRL's default 0.05). The reward is
ple's, called on the plain query through a bridge that also writes samples.jsonl and counts
the generation budget.
"""

from __future__ import annotations

import json

from datasets import Dataset
from trl import RLOOConfig, RLOOTrainer

from ple.baselines.trl_run import TRLRun
from ple.config import TrainConfig
from ple.rewards import checked_scores

GENERATIONS = 2


class RewardBridge:
    """A TRL reward function around a ple RewardModel."""

    __name__ = "reward"  # TRL names its logged metric after the function

    def __init__(self, run: TRLRun):
        self.run = run

    def __call__(self, prompts, completions, completion_ids, trainer_state, query, **kwargs):
        scores = checked_scores(self.run.reward, query, completions)
        self.run.totals["generated_responses"] += len(completions)
        self.run.totals["generated_tokens"] += sum(len(ids) for ids in completion_ids)
        with open(self.run.out / "samples.jsonl", "a") as f:
            for q, c, s in zip(query, completions, scores):
                f.write(json.dumps({"step": trainer_state.global_step + 1, "query": q,
                                    "response": c, "reward": s}) + "\n")
        return scores


def rloo_args(a: TrainConfig) -> dict:
    """The RLOOConfig values ple sets on top of TRLRun.trl_args: 2 responses per query,
    the batch's queries in one generation batch, ple's sampling parameters."""
    beta = {} if a.beta is None else {"beta": a.beta}
    return dict(**beta, num_generations=GENERATIONS,
                per_device_train_batch_size=GENERATIONS * a.batch_size,
                max_completion_length=a.max_new_tokens, temperature=a.temperature,
                top_p=a.top_p, top_k=a.top_k)


def rloo_dataset(run: TRLRun, queries: list[str]) -> Dataset:
    return Dataset.from_list([{"prompt": run.prompt(q), "query": q} for q in queries])


def train_rloo(run: TRLRun, queries: list[str]) -> dict:
    return run.run(RLOOTrainer, RLOOConfig, rloo_dataset(run, queries), samples=[],
                   trainer_args={"reward_funcs": RewardBridge(run)}, **rloo_args(run.args))
