"""SFT baseline (Eq. 1) with TRL's SFTTrainer, on the task's supervised data: HH chosen
responses, IMDb positive reviews (label 1), TL;DR reference summaries. The prompts are the
ones PLE samples from, and the loss covers the response tokens only."""

from __future__ import annotations

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from ple.baselines.trl_run import TRLRun


def train_sft(run: TRLRun, pairs: list[tuple[str, str]]) -> dict:
    dataset = Dataset.from_list([{"prompt": run.prompt(q), "completion": r} for q, r in pairs])
    return run.run(SFTTrainer, SFTConfig, dataset, samples=[], completion_only_loss=True,
                   max_length=run.args.max_prompt_tokens + run.args.max_new_tokens)
