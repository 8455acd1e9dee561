"""PPO (Schulman et al. 2017) for language models, as Ziegler et al. 2019 and TRL's
PPOTrainer (removed from TRL in PR #7020) run it, on the rollout and reward code PLE uses.

Per step, on a mini-batch of queries:

    y ~ pi(.|x), one plain response per query          (OnlineTrainer._sample, one call)
    s = R(x, y); whitened over the batch               (ppo_whiten_rewards)
    log pi_old, V_old (no grad) and log pi_ref           (the reference: the adapter disabled)
    r_t = -beta (log pi_old - log pi_ref), + s at the last token    (ppo_kl_coef)
    A, R = GAE(r, V_old; gamma, lambda); A whitened over the batch's tokens
    ppo_epochs x mini-batches of train_batch_size:
        L = clipped policy loss + ppo_vf_coef * clipped value loss -> one optimizer step

The value head is a Linear(hidden_size, 1) on the policy's last hidden state (the LM head's
input), as in TRL's AutoModelForCausalLMWithValueHead: policy and value share the backbone and
one forward pass gives both. It is trained by the same optimizer, checkpointed with the
adapter, and saved as value_head.safetensors beside it.

Full fine-tuning (use_lora: false) keeps a frozen copy of the initial model as the reference
(the one OnlineTrainer keeps for evaluation when it has one), which doubles the policy's memory.
Like the adapter-disabled reference it is the model before any SFT warm-up.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from ple import checkpoint
from ple.baselines import ppo_losses
from ple.config import PPOConfig
from ple.online import OnlineTrainer
from ple.rewards import checked_scores
from ple.sequences import pack, response_logprobs_and_hidden


def _rows(batch: dict, index: torch.Tensor) -> dict:
    return {k: v[index] for k, v in batch.items()}


class PPOTrainer(OnlineTrainer):
    """Train a model with PPO (see ple.online.OnlineTrainer for the arguments)."""

    config_class = PPOConfig

    def _uses_reference(self) -> bool:
        return True

    def _extra_modules(self, model) -> dict[str, torch.nn.Module]:
        hidden = model.config.get_text_config().hidden_size
        return {"value_head": torch.nn.Linear(hidden, 1).to(self.accelerator.device)}

    @property
    def value_head(self) -> torch.nn.Module:
        return self.extra_modules["value_head"]

    # --- forward passes --------------------------------------------------------------------
    def _policy_forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Response log-probs and values [N, R] from one forward pass (0 at padding)."""
        logp, hidden = response_logprobs_and_hidden(self.model, batch)
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return logp, values * batch["response_mask"].to(values.device)

    @torch.no_grad()
    def _rollout_stats(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """log pi_old, V_old and log pi_ref of the sampled responses, in chunks of
        train_batch_size rows (the policy in eval mode, so no dropout)."""
        self.model.eval()
        size, n = self.args.train_batch_size, batch["input_ids"].shape[0]
        parts = []
        for i in range(0, n, size):
            chunk = _rows(batch, torch.arange(i, min(i + size, n)))
            parts.append((*self._policy_forward(chunk), self.reference_logprobs(chunk)))
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

    def _update(self, batch: dict, old_logp, old_values, advantages, returns, mask,
                step: int) -> dict:
        """ppo_epochs epochs over the batch, shuffled each epoch, one optimizer step per
        train_batch_size x gradient_accumulation_steps responses."""
        a = self.args
        rng = random.Random(a.seed * 100_003 + step)
        sums = {"loss": 0.0, "loss_policy": 0.0, "loss_value": 0.0, "clipfrac": 0.0,
                "grad_norm": 0.0}
        n_updates = 0

        def chunk_losses(rows: list[int]) -> dict:
            index = torch.tensor(rows)
            logp, values = self._policy_forward(_rows(batch, index))
            index = index.to(logp.device)
            m = mask[index]
            policy, clipfrac = ppo_losses.clipped_policy_loss(
                logp, old_logp[index], advantages[index], m, a.ppo_clip)
            value = ppo_losses.clipped_value_loss(values, old_values[index], returns[index], m,
                                                  a.ppo_value_clip)
            return {"loss": policy + a.ppo_vf_coef * value, "loss_policy": policy,
                    "loss_value": value, "clipfrac": clipfrac}

        for _ in range(a.ppo_epochs):
            order = list(range(len(mask)))
            rng.shuffle(order)
            for out in self.updater.steps(order, chunk_losses):
                for key in sums:
                    sums[key] += out[key]
                n_updates += 1
        self.totals["optimizer_steps"] += n_updates
        return {**{k: v / n_updates for k, v in sums.items()}, "n_updates": n_updates}

    def _step(self, step: int, queries: list[str]) -> dict:
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
        kl = float(((old_logp - ref_logp) * mask).sum(-1).mean())
        trained = self._update(batch, old_logp, old_values, advantages, returns, mask, step)
        t3 = time.perf_counter()
        for query, text, score in zip(queries, texts, scores):
            self.writer.sample({"step": step, "query": query, "response": text,
                                "reward": score})
        n = len(queries)
        truncated = getattr(self.reward, "truncated", None)
        return {"step": step, "n_queries": n, "reward_mean": sum(scores) / n, **trained,
                "kl": kl,
                "seconds_generate": t1 - t0, "seconds_score": t2 - t1, "seconds_train": t3 - t2,
                **self.totals,
                **({"reward_truncated": truncated} if truncated is not None else {})}

    def _progress(self, row: dict) -> dict:
        return {"r": f"{row['reward_mean']:.2f}", "kl": f"{row['kl']:.3f}"}

    def _save(self, out: Path, model) -> None:
        super()._save(out, model)
        checkpoint.write_tensors(out / "value_head.safetensors", self.value_head.state_dict())
