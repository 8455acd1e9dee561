"""Fine-tune a classifier reward model with transformers' Trainer: cross-entropy on the two
logits of each text against its 0/1 label. Its reward is then the logit of label 1 (the
paper's IMDb sentiment reward: the positive-class logit)."""

from __future__ import annotations

import torch

from ple.rewards.training.base_model import padded
from ple.rewards.training.config import RewardTrainConfig
from ple.rewards.training.finetune import (logged_losses, make_optimizer, total_steps,
                                           trainer_arguments)


def train_classifier(cfg: RewardTrainConfig, model, head: str | None, ids: list[list[int]],
                     labels: list[int], pad_id: int, work_dir: str):
    """Train `model` on the token ids of the training texts and their labels (settings in
    ple.rewards.training.finetune). Returns (the trained model, the logged losses)."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    def collate(rows: list[dict]) -> dict:
        return {**padded([row["input_ids"] for row in rows], pad_id),
                "labels": torch.tensor([row["labels"] for row in rows], dtype=torch.long)}

    def cross_entropy(outputs, labels, num_items_in_batch=None):
        # The batch mean, whatever the model's own loss would be (it depends on its config's
        # problem_type); every row is one label, so num_items_in_batch is the batch size.
        return torch.nn.functional.cross_entropy(outputs.logits.float(), labels)

    args = trainer_arguments(TrainingArguments, cfg, total_steps(cfg, len(ids)), work_dir,
                             remove_unused_columns=False)  # the collator reads both columns
    trainer = Trainer(model=model, args=args, data_collator=collate,
                      train_dataset=Dataset.from_dict({"input_ids": ids, "labels": labels}),
                      optimizers=(make_optimizer(cfg, model, head), None),
                      compute_loss_func=cross_entropy)
    trainer.train()
    return trainer.model, logged_losses(trainer)
