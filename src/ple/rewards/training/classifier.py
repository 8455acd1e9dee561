"""Fine-tune a classifier reward model: cross-entropy on the two logits of each text against
its 0/1 label. Its reward is then the logit of label 1 (the paper's IMDb sentiment reward:
the positive-class logit)."""

from __future__ import annotations

import random

import torch

from ple.rewards.training.base_model import padded
from ple.rewards.training.config import RewardTrainConfig
from ple.rewards.training.finetune import make_optimizer, total_steps


def train_classifier(cfg: RewardTrainConfig, model, head: str | None, ids: list[list[int]],
                     labels: list[int], pad_id: int):
    """Train `model` on the token ids of the training texts and their labels (settings in
    ple.rewards.training.finetune). Returns (the trained model, the loss of every step)."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    steps = total_steps(cfg, len(ids))
    optimizer = make_optimizer(cfg, model, head)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    rng = random.Random(cfg.seed + 2)
    order: list[int] = []
    log = []
    model.train()
    bar = tqdm(range(1, steps + 1), desc="training classifier", unit="step")
    for step in bar:
        batch_index = []
        while len(batch_index) < min(cfg.batch_size, len(ids)):
            if not order:
                order = list(range(len(ids)))
                rng.shuffle(order)
            batch_index.append(order.pop())
        batch = padded([ids[i] for i in batch_index], pad_id)
        target = torch.tensor([labels[i] for i in batch_index], dtype=torch.long)
        loss = torch.nn.functional.cross_entropy(model(**batch).logits.float(), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.append({"step": step, "loss": round(loss.item(), 6)})
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return model, log
