"""PPO (Schulman et al. 2017) for language models, as Ziegler et al. 2019 and TRL's
PPOTrainer (removed from TRL in PR #7020) run it, on the rollout and reward code PLE uses.

Per step, on a mini-batch of queries:

    y ~ pi(.|x), one plain response per query          (OnlineTrainer._sample, one call)
    s = R(x, y); whitened over the batch               (ppo_whiten_rewards)
    log pi_old, V_old (no grad) and log pi_ref           (the reference: the adapter disabled)
    r_t = -beta (log pi_old - log pi_ref), + s at the last token    (ppo_kl_coef)
    A, R = GAE(r, V_old; gamma, lambda); A whitened over the batch's tokens
    ppo_epochs x mini-batches of per_device_train_batch_size x gradient_accumulation_steps:
        L = clipped policy loss + ppo_vf_coef * clipped value loss -> one optimizer step
        (all but the last inside the step's rollout; Trainer makes the last, and steps the
        learning-rate schedule once per step)

The value head is a Linear(hidden_size, 1) on the policy's last hidden state (the LM head's
input), as in TRL's AutoModelForCausalLMWithValueHead: policy and value share the backbone and
one forward pass gives both. It is trained by the same optimizer (its own parameter group),
clipped with the policy, checkpointed, and saved as value_head.safetensors beside the
adapter. PPO runs on one process.

Full fine-tuning (use_lora: false) keeps a frozen copy of the initial model as the reference
(the one OnlineTrainer keeps for evaluation when it has one), which doubles the policy's memory.
Like the adapter-disabled reference it is the model before any SFT warm-up.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ple.baselines import ppo_losses
from ple.config import PPOConfig
from ple.online import OnlineTrainer
from ple.rewards import checked_scores
from ple.sequences import pack, response_logprobs_and_hidden

VALUE_HEAD_FILE = "value_head.safetensors"


def _rows(batch: dict, index: torch.Tensor) -> dict:
    return {k: v[index] for k, v in batch.items()}


class PPOTrainer(OnlineTrainer):
    """Train a model with PPO (see ple.online.OnlineTrainer for the arguments)."""

    config_class = PPOConfig

    def _setup(self) -> None:
        hidden = self.model.config.get_text_config().hidden_size
        self.value_head = torch.nn.Linear(hidden, 1).to(self.accelerator.device)
        self._inner: list[dict] = []  # this step's loss terms of the updates before the last

    def _uses_reference(self, args) -> bool:
        return True

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with the value head as a parameter group of its own."""
        optimizer = super().create_optimizer(model)
        optimizer.add_param_group({"params": list(self.value_head.parameters()),
                                   "weight_decay": self.args.weight_decay})
        return optimizer

    def _clip_grad_norm(self, model):
        return self.accelerator.clip_grad_norm_(self._params(), self.args.max_grad_norm)

    def _params(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters()) + list(self.value_head.parameters())

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {**super().trainable(),
                **{f"value_head.{n}": p for n, p in self.value_head.named_parameters()}}

    # --- forward passes --------------------------------------------------------------------
    def _policy_forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Response log-probs and values [N, R] from one forward pass (0 at padding)."""
        logp, hidden = response_logprobs_and_hidden(self.model_wrapped, batch)
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return logp, values * batch["response_mask"].to(values.device)

    @torch.no_grad()
    def _rollout_stats(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """log pi_old, V_old and log pi_ref of the sampled responses, in chunks of
        per_device_train_batch_size rows (the policy in eval mode, so no dropout)."""
        self.model.eval()
        size, n = self.args.per_device_train_batch_size, batch["input_ids"].shape[0]
        parts = []
        for i in range(0, n, size):
            chunk = _rows(batch, torch.arange(i, min(i + size, n)))
            parts.append((*self._policy_forward(chunk), self.reference_logprobs(chunk)))
        self.model.train()
        return tuple(torch.cat(p) for p in zip(*parts))

    # --- the step --------------------------------------------------------------------------
    def _advantages(self, scores: list[float], logp, ref_logp, values, mask) -> tuple:
        a = self.args
        score = torch.tensor(scores, dtype=torch.float32, device=logp.device)
        if a.ppo_whiten_rewards and len(scores) > 1:
            score = ppo_losses.whiten(score, torch.ones_like(score))
        rewards = ppo_losses.kl_penalised_rewards(score, logp, ref_logp, mask, a.ppo_kl_coef)
        advantages, returns = ppo_losses.gae(rewards, values, mask, a.ppo_gamma, a.ppo_lambda)
        if mask.sum() > 1:  # as Ziegler et al. 2019 and TRL do, after the returns are formed
            advantages = ppo_losses.whiten(advantages, mask)
        return advantages, returns

    def _loss(self, rows: list[int]) -> dict:
        """The clipped PPO losses on some of the step's responses (their row numbers)."""
        a, r = self.args, self._rollout_data
        index = torch.tensor(rows)
        logp, values = self._policy_forward(_rows(r["batch"], index))
        index = index.to(logp.device)
        m = r["mask"][index]
        policy, clipfrac = ppo_losses.clipped_policy_loss(
            logp, r["old_logp"][index], r["advantages"][index], m, a.ppo_clip)
        value = ppo_losses.clipped_value_loss(values, r["old_values"][index],
                                              r["returns"][index], m, a.ppo_value_clip)
        return {"loss": policy + a.ppo_vf_coef * value, "loss_policy": policy,
                "loss_value": value, "clipfrac": clipfrac}

    def _mini_batches(self, n: int, step: int) -> list[list[int]]:
        """ppo_epochs passes over the step's n responses, shuffled each epoch, in mini-batches
        of per_device_train_batch_size x gradient_accumulation_steps: one optimizer step
        each."""
        a = self.args
        size = a.per_device_train_batch_size * a.gradient_accumulation_steps
        rng = random.Random(a.seed * 100_003 + step)
        batches = []
        for _ in range(a.ppo_epochs):
            order = list(range(n))
            rng.shuffle(order)
            batches += [order[i:i + size] for i in range(0, n, size)]
        return batches

    def _update(self, rows: list[int]) -> dict:
        """One optimizer step on a mini-batch, accumulated over gradient_accumulation_steps
        chunks; returns its loss terms and gradient norm."""
        a = self.args
        size = -(-len(rows) // a.gradient_accumulation_steps)
        terms: dict[str, float] = {}
        for i in range(0, len(rows), size):
            chunk = rows[i:i + size]
            out = self._loss(chunk)
            self.accelerator.backward(out["loss"] * (len(chunk) / len(rows)))
            for key, value in out.items():
                terms[key] = terms.get(key, 0.0) + float(value.detach()) * len(chunk) / len(rows)
        terms["grad_norm"] = float(self._clip_grad_norm(self.model))
        self.optimizer.step()
        self.optimizer.zero_grad()
        return terms

    def _rollout(self, step: int, queries: list[str]) -> tuple[list, dict]:
        # Trainer zeroes the policy's gradients after its optimizer step, not the value
        # head's, which is not part of the model.
        self.optimizer.zero_grad()
        t0 = time.perf_counter()
        plain = [self.prompter.ids(q) for q in queries]
        responses, texts = self._sample(plain)
        self._count_generated(responses)
        t1 = time.perf_counter()
        scores = checked_scores(self.reward, queries, texts, responses)
        t2 = time.perf_counter()
        batch = pack(plain, responses, self.tokenizer.pad_token_id)
        old_logp, old_values, ref_logp = self._rollout_stats(batch)
        mask = batch["response_mask"].to(old_logp.device)
        advantages, returns = self._advantages(scores, old_logp, ref_logp, old_values, mask)
        self._rollout_data = {"batch": batch, "mask": mask, "old_logp": old_logp,
                              "old_values": old_values, "advantages": advantages,
                              "returns": returns}
        kl = float(((old_logp - ref_logp) * mask).sum(-1).mean())
        mini_batches = self._mini_batches(len(queries), step)
        self._inner = [self._update(rows) for rows in mini_batches[:-1]]
        for query, text, score in zip(queries, texts, scores):
            self.writer.sample({"step": step, "query": query, "response": text,
                                "reward": score})
        n = len(queries)
        truncated = getattr(self.reward, "truncated", None)
        row = {"step": step, "n_queries": n, "reward_mean": sum(scores) / n,
               "n_updates": len(mini_batches), "kl": kl,
               "seconds_generate": t1 - t0, "seconds_score": t2 - t1,
               **({"reward_truncated": truncated} if truncated is not None else {})}
        return mini_batches[-1], row

    def _finish_row(self, row: dict, terms: dict) -> dict:
        """Each loss term and the gradient norm averaged over the step's updates."""
        updates = [*self._inner, terms]
        return {**row, **{k: sum(u[k] for u in updates) / len(updates) for k in terms}}

    # --- files ---------------------------------------------------------------------------
    def _save_run(self, out: Path, model) -> None:
        super()._save_run(out, model)
        self._write_method_files(out)

    def _write_method_files(self, folder: Path) -> None:
        save_file({k: v.detach().cpu().contiguous()
                   for k, v in self.value_head.state_dict().items()},
                  str(folder / VALUE_HEAD_FILE))

    def _load_method_state(self, state: dict, folder: Path) -> None:
        self.value_head.load_state_dict(load_file(str(folder / VALUE_HEAD_FILE)))
