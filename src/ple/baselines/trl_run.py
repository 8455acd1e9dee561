"""The harness for methods TRL trains: SFT and DPO from a fixed dataset, RLOO online.

TRL runs the optimisation; ple builds the dataset with the same prompts PLE samples from,
adds the same LoRA, and writes the same output directory: config.yaml, metrics.jsonl (one
row per optimizer step, with the cumulative budget), samples.jsonl, adapter/, the PNG
and summary.json with the held-out evaluation before and after. The PNG is loss_curve.png:
TRL's logs are the per-step metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import TrainerCallback

from ple.config import TrainConfig, launched_with_deepspeed, trackers
from ple.evaluation.heldout import evaluate_plain
from peft import get_peft_model

from ple.models import paper_lora, saved_base
from ple.evaluation.heldout import eval_row
from ple.online import make_prompter
from ple.plot import plot_loss_curve
from ple.rewards import RewardModel, reward_model_id
from ple.rollout import length_filter
from ple.run_writer import RunWriter
from ple.sampling_model import sampling_model


class MetricsWriter(TrainerCallback):
    """Writes TRL's per-step logs to metrics.jsonl, with the run's cumulative budget and,
    every `eval_steps` optimizer steps (0: never), the numbers of `evaluate()`."""

    def __init__(self, path: Path, totals: dict, eval_steps: int = 0, evaluate=None):
        self.path, self.totals, self.rows = path, totals, []
        self.eval_steps, self.evaluate = eval_steps, evaluate

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:  # the end-of-training summary is not a step
            return
        self.totals["optimizer_steps"] = state.global_step
        row = {"step": state.global_step, **logs, **self.totals}
        # Every eval_steps and after the last step, as transformers.Trainer evaluates.
        if self.eval_steps and (state.global_step % self.eval_steps == 0
                                or state.global_step == state.max_steps):
            row.update(eval_row(self.evaluate()))
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class TRLRun:
    """Set-up shared by the TRL methods: prompts, LoRA, output directory, evaluation."""

    def __init__(self, args: TrainConfig, model, tokenizer, reward: RewardModel,
                 eval_queries: list[str] | None = None):
        self.args, self.tokenizer, self.reward = args, tokenizer, reward
        if reward is not None:  # config.yaml records the reward that ran, default or not
            args.reward = reward.name
        self.prompter = make_prompter(args, tokenizer)
        self.eval_queries = length_filter(self.prompter, eval_queries or [],
                                          args.max_prompt_tokens, "eval")[0]
        torch.manual_seed(args.seed)
        self.model = get_peft_model(
            model, paper_lora(args.lora_r, args.lora_alpha, args.lora_dropout)) \
            if args.use_lora else model
        self.frozen_base = None
        if not args.use_lora and self.eval_queries:
            import copy

            self.frozen_base = copy.deepcopy(model).eval().requires_grad_(False)
        self.sampling = sampling_model(args.generation_dtype, torch.device(
            "cuda" if torch.cuda.is_available() else "cpu"), launched_with_deepspeed())
        args.generation_dtype = self.sampling.dtype
        self.out = Path(args.output_dir)
        self.totals = {"generated_responses": 0, "generated_tokens": 0, "optimizer_steps": 0}

    def prompt(self, query: str) -> str:
        """The prompt text PLE samples from for this query (chat template or raw)."""
        return self.prompter.text(query, guided=False)

    def evaluate(self) -> dict:
        return evaluate_plain(self.model, self.tokenizer, self.prompter, self.reward,
                              self.eval_queries, self.args, self.frozen_base, progress=True,
                              sampler=self.sampling.of(self.model))

    def trl_args(self, config_class, **method_args):
        a = self.args
        defaults = dict(
            output_dir=str(self.out / "trl"), max_steps=a.max_steps,
            per_device_train_batch_size=a.batch_size, learning_rate=a.learning_rate,
            lr_scheduler_type=a.lr_scheduler_type, warmup_steps=a.warmup_steps, optim=a.optim,
            max_grad_norm=a.max_grad_norm, seed=a.seed, weight_decay=a.weight_decay,
            logging_steps=1, save_strategy="no", report_to=trackers(a) or "none",
            gradient_accumulation_steps=a.gradient_accumulation_steps,
            activation_checkpointing=a.activation_checkpointing,
            bf16=a.bf16 and torch.cuda.is_available(), use_cpu=not torch.cuda.is_available())
        return config_class(**{**defaults, **method_args})

    def run(self, trainer_class, config_class, dataset, samples: list[dict],
            trainer_args: dict | None = None, **method_args) -> dict:
        """Train with TRL and write the output directory; returns the summary."""
        files = RunWriter(self.out)
        files.start(self.args)
        (self.out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
        summary = {"examples": len(dataset), "reward_model": reward_model_id(self.reward),
                   "model_dtype": str(self.model.dtype).removeprefix("torch.")}
        if self.eval_queries:
            summary["eval_before"] = self.evaluate()
        writer = MetricsWriter(self.out / "metrics.jsonl", self.totals, int(self.args.eval_steps or 0),
                               self.evaluate)
        self.tokenizer.padding_side = "right"  # TRL pads training batches on the right
        trainer = trainer_class(model=self.model, args=self.trl_args(config_class, **method_args),
                                train_dataset=dataset, processing_class=self.tokenizer,
                                callbacks=[writer], **(trainer_args or {}))
        trainer.train()
        self.tokenizer.padding_side = "left"
        saved = self.out / ("adapter" if self.args.use_lora else "model")
        files.save_model(self.model, saved, self.tokenizer,
                         saved_base(self.model, self.args.model))
        plot_loss_curve(writer.rows, self.out / "loss_curve.png")
        if self.eval_queries:
            summary["eval_after"] = self.evaluate()
        summary["steps"] = trainer.state.global_step
        files.finish(self.args, saved, writer.rows, summary)
        if self.args.push_to_hub:
            files.push(self.model, self.tokenizer, self.args, writer.rows, summary)
        return summary

