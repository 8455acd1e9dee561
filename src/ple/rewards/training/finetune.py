"""What fine-tuning a classifier (ple.rewards.training.classifier) and a preference model
(ple.rewards.training.pairwise) share: the number of steps, the optimizer and the
transformers Trainer arguments, so that the two kinds train alike.

AdamW without weight decay, the new head at its own learning rate (--head-learning-rate),
linear warm-up (--warmup-ratio) and linear decay to 0, gradients clipped at norm 1. In float32
on the CPU even where a GPU is free: a built-in reward (ple.rewards.builtin) is cached under a
key of its recipe and data, not of the machine, so it must come out the same everywhere.
"""

from __future__ import annotations

import math

import torch

from ple.rewards.training.config import RewardTrainConfig


def total_steps(cfg: RewardTrainConfig, n_train: int) -> int:
    """--max-steps, or the steps of --epochs passes over `n_train` examples."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))


def make_optimizer(cfg: RewardTrainConfig, model, head: str | None) -> torch.optim.AdamW:
    """AdamW over the trainable weights, the new head (`head`, not its LoRA adapters) at
    --head-learning-rate and everything else at --learning-rate."""
    groups: dict[bool, list] = {True: [], False: []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            is_head = head is not None and "lora_" not in name and f".{head}." in f".{name}"
            groups[is_head].append(param)
    lrs = {False: cfg.learning_rate, True: cfg.head_learning_rate or cfg.learning_rate}
    return torch.optim.AdamW([{"params": ps, "lr": lrs[is_head]} for is_head, ps in
                              groups.items() if ps], lr=cfg.learning_rate, weight_decay=0.0)


def trainer_arguments(args_class, cfg: RewardTrainConfig, steps: int, work_dir: str,
                      **extra):
    """`args_class` (transformers' TrainingArguments or TRL's RewardConfig) for `steps`
    optimizer steps, with the schedule above, the loss logged about 20 times, nothing saved
    (ple saves the model itself, ple.rewards.training.save) and `extra` on top."""
    return args_class(
        output_dir=work_dir, max_steps=steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, lr_scheduler_type="linear",
        warmup_steps=int(cfg.warmup_ratio * steps), weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=max(1, steps // 20), save_strategy="no", eval_strategy="no",
        report_to="none", bf16=False, fp16=False, seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=False, **extra)


def logged_losses(trainer) -> list[dict]:
    """The training losses the trainer logged, as reward_eval.json records them: each the
    mean over the steps since the one before."""
    return [{"step": e["step"], "loss": round(e["loss"], 6)}
            for e in trainer.state.log_history if "loss" in e]
