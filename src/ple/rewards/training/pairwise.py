"""Fine-tune a preference reward model with trl.RewardTrainer: one output r(x, y), trained
with the Bradley–Terry loss −log σ(r(x, y_chosen) − r(x, y_rejected)) (the paper's TL;DR
reward model)."""

from __future__ import annotations

from ple.rewards.training.config import RewardTrainConfig
from ple.rewards.training.finetune import (logged_losses, make_optimizer, total_steps,
                                           trainer_arguments)


def train_preference(cfg: RewardTrainConfig, model, head: str | None, tokenizer,
                     chosen: list[list[int]], rejected: list[list[int]], work_dir: str):
    """Train `model` on the token ids of the training pairs (settings in
    ple.rewards.training.finetune). The pairs come tokenized: TRL's own tokenization would
    append EOS and drop, not cut, long pairs, and serving does neither. Returns (the trained
    model, the logged losses)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    args = trainer_arguments(RewardConfig, cfg, total_steps(cfg, len(chosen)), work_dir,
                             activation_checkpointing=False, max_length=None)
    trainer = RewardTrainer(
        model=model, args=args, processing_class=tokenizer,
        optimizers=(make_optimizer(cfg, model, head), None),
        train_dataset=Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected}))
    trainer.train()
    return trainer.model, logged_losses(trainer)
