"""PLETrainer: Algorithm 1 of the paper.

    for step t = 1..I:
        queries -> y ~ pi(.|x), y' ~ pi(.|[p, x])     (rollout.sample, one generate call)
        s = R(x, y), s' = R(x, y')                     (rewards)
        D_train <- D_train + {(x, y, y', s, s')}       (buffer)
        Eq. 6 under tau_t over the replayed pairs (losses) -> one optimizer step
        tau_{t+1} = tau_t * alpha                      (losses.threshold)
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from ple import losses
from ple.buffer import ReplayBuffer, ScoredPair
from ple.config import PLEConfig
from ple.plot import plot_purity
from ple.purity import level_set_purity
from ple.online import OnlineTrainer, gather, share
from ple.rewards import checked_scores
from ple.sequences import pack, response_token_logprobs

BUFFER_FILE = "buffer.jsonl"  # D_train in a checkpoint, one pair a line


def mean_or_none(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class PLETrainer(OnlineTrainer):
    """Train a model with PLE (see ple.online.OnlineTrainer for the arguments)."""

    config_class = PLEConfig

    def _setup(self) -> None:
        self.buffer = ReplayBuffer(self.args.replay_window)  # D_train
        # tau_scale spread: the spread of s' - s on step 1's pairs (losses.gap_spread).
        self.gap_spread: float | None = None
        self.tau: float | None = None  # the current step's threshold
        self.items: list[ScoredPair] = []  # the current step's pairs to train on

    def _uses_reference(self, args) -> bool:
        return args.kl_coef > 0 or args.rank_loss == "logistic"

    def _trains_weighted(self) -> bool:
        """Whether pairs at or under tau are trained on: not without L_weighted-sft."""
        return self.args.ablation != "no_wsft" and self.args.wsft_coef > 0

    def _method_state(self) -> dict:
        return {"gap_spread": self.gap_spread}

    def _write_method_files(self, folder: Path) -> None:
        (folder / BUFFER_FILE).write_text("".join(json.dumps(p.__dict__) + "\n"
                                                  for p in self.buffer.pairs))

    def _load_method_state(self, state: dict, folder: Path) -> None:
        self.gap_spread = state["gap_spread"]
        self.buffer.pairs = [ScoredPair(**json.loads(line)) for line in
                             (folder / BUFFER_FILE).read_text(encoding="utf-8").splitlines()]

    def _threshold(self, step: int, pairs: list[ScoredPair]) -> float:
        """Eq. 7's tau for `step`. With tau_scale spread, tau0 counts in spreads of s' - s,
        measured on step 1's pairs (all processes': every process measures the same)."""
        a = self.args
        if a.tau_scale == "absolute":
            return losses.threshold(a.tau0, a.alpha, step)
        if step == 1:
            self.gap_spread = losses.gap_spread([p.reward_prompt - p.reward for p in pairs])
        return losses.threshold(a.tau0 * self.gap_spread, a.alpha, step)

    def _generate(self, queries: list[str]) -> tuple[list, list, list]:
        """Plain prompts, then the ids and texts of y (first half) and y' (second half), from
        ONE generate call. y' is principle-guided, except in the no_rank ablation, where it is
        a second plain sample."""
        plain = [self.prompter.ids(q) for q in queries]
        guided = self.args.ablation != "no_rank"
        return (plain, *self._sample(plain + [self.prompter.ids(q, guided=guided)
                                              for q in queries]))

    def _pair_terms(self, pairs: list[ScoredPair], tau: float) -> dict:
        """One forward pass over a mini-batch of pairs (y and y' both continue the plain
        query x): per pair, the log-probs of y (first half of `logp_sum`, `logp_norm`, and
        of `logp_wsft`, the ones Eq. 4 weighs) and of y' (second half), Eq. 5's weights, the
        branch, and each term of Eq. 6 before the mini-batch's reduction."""
        n = len(pairs)
        batch = pack([p.prompt_ids for p in pairs] * 2,
                     [p.response_ids for p in pairs] + [p.guided_ids for p in pairs],
                     self.tokenizer.pad_token_id)
        token_logps = response_token_logprobs(self.model_wrapped, batch)
        mask = batch["response_mask"].to(token_logps.device)
        logp_sum = losses.sequence_logprob(token_logps, mask)
        logp_norm = losses.normalised_logprob(token_logps, mask)
        device = logp_sum.device
        a = self.args
        ref_logps = None
        if self._uses_reference(a):
            # The KL penalty needs the reference on y only; the logistic rank loss on y' too.
            rows = 2 * n if a.rank_loss == "logistic" else n
            ref_logps = self.reference_logprobs({k: v[:rows] for k, v in batch.items()})
            ref_logps = ref_logps.to(device)
        is_rank = torch.tensor([self._branch_is_rank(p, tau) for p in pairs], device=device)
        weights = torch.tensor([losses.label_weights(p.reward, p.reward_prompt) for p in pairs],
                               device=device)
        if a.rank_loss == "logistic":
            ref_sum = losses.sequence_logprob(ref_logps, mask)
            rank = losses.logistic_rank_loss(logp_sum[n:], logp_sum[:n], ref_sum[n:],
                                             ref_sum[:n], a.rank_beta)
        else:
            rank = losses.rank_loss(logp_norm[n:], logp_norm[:n], hinge=a.rank_loss == "hinge")
        logp_wsft = logp_norm if a.wsft_length_norm else logp_sum
        weighted_sft = (losses.positive_weighted_sft_loss if a.wsft_positive_only
                        else losses.weighted_sft_loss)
        wsft = weighted_sft(weights[:, 0], logp_wsft[:n], weights[:, 1], logp_wsft[n:])
        # The better response of a pair: y' on the rank branch, else the higher-scored one.
        guided_better = is_rank | (weights[:, 1] > weights[:, 0])
        anchor = -torch.where(guided_better, logp_norm[n:], logp_norm[:n])
        kl = None
        if a.kl_coef > 0:
            kl = losses.kl_penalty(token_logps[:n], ref_logps[:n], mask[:n])
        return {"logp_sum": logp_sum, "logp_norm": logp_norm, "logp_wsft": logp_wsft,
                "weights": weights, "is_rank": is_rank, "rank": rank, "wsft": wsft,
                "anchor": anchor, "kl": kl}

    def _pair_losses(self, pairs: list[ScoredPair], tau: float) -> dict:
        """Eq. 6 for a mini-batch of pairs, with the length-normalised log-probs of y and y'
        (no gradient), for purity and the margins."""
        t = self._pair_terms(pairs, tau)
        n = len(pairs)
        return {**losses.ple_loss(t["rank"], t["wsft"], t["is_rank"], t["anchor"],
                                  self.args.sft_anchor, t["kl"], self.args.kl_coef,
                                  self.args.wsft_coef),
                "logp": t["logp_norm"][:n].tolist(), "logp_prompt": t["logp_norm"][n:].tolist()}

    def _branch_is_rank(self, pair: ScoredPair, tau: float) -> bool:
        # Without L_rank there is no principle-guided response to rank: all pairs are "similar".
        return self.args.ablation != "no_rank" and losses.is_rank_pair(
            pair.reward, pair.reward_prompt, tau)

    def _rollout(self, step: int, queries: list[str]) -> tuple[list, dict]:
        """Algorithm 1 lines 5-11: y and y' for the step's queries, scored; D_train grows by
        the step's pairs, and the pairs to replay are the step's items, shuffled. Without
        L_weighted-sft, pairs at or under tau are not trained on."""
        t0 = time.perf_counter()
        mine = share(self.accelerator, queries)
        prompts, responses, texts = self._generate(mine)
        t1 = time.perf_counter()
        m = len(mine)
        scores = checked_scores(self.reward, mine * 2, texts, responses)
        t2 = time.perf_counter()
        pairs = [ScoredPair(step, q, prompts[i], responses[i], responses[m + i],
                            scores[i], scores[m + i]) for i, q in enumerate(mine)]
        # Every process keeps all of D_train, so that all replay the same pairs.
        pairs, text_pairs = gather(self.accelerator, pairs, list(zip(texts[:m], texts[m:])))
        self._count_generated([p.response_ids for p in pairs] + [p.guided_ids for p in pairs])
        n = len(queries)
        self.tau = tau = self._threshold(step, pairs)
        self.buffer.add(pairs)
        replayed = self.buffer.replay(step)
        random.Random(self.args.seed * 100_003 + step).shuffle(replayed)
        ranked = [self._branch_is_rank(p, tau) for p in replayed]
        self.items = replayed if self._trains_weighted() else \
            [p for p, r in zip(replayed, ranked) if r]
        new_rank = 0
        for pair, (text, text_prompt) in zip(pairs, text_pairs):
            rank = self._branch_is_rank(pair, tau)
            new_rank += rank
            w, w_prompt = (None, None) if rank else losses.label_weights(pair.reward,
                                                                         pair.reward_prompt)
            self.writer.sample({
                "step": step, "query": pair.query, "response": text,
                "response_prompt": text_prompt, "reward": pair.reward,
                "reward_prompt": pair.reward_prompt, "tau": tau,
                "branch": "rank" if rank else "weighted", "w": w, "w_prompt": w_prompt})
        truncated = getattr(self.reward, "truncated", None)
        row = {"step": step, "tau": tau, "n_queries": n, "buffer_size": len(self.buffer),
               "n_rank": sum(ranked), "n_weighted": len(replayed) - sum(ranked),
               "n_updates": 1 if self.items else 0,
               "reward_mean": sum(p.reward for p in pairs) / n,
               "reward_prompt_mean": sum(p.reward_prompt for p in pairs) / n,
               "rank_share_new": new_rank / n,
               "seconds_generate": t1 - t0, "seconds_score": t2 - t1,
               **({"tau_spread": self.gap_spread} if self.args.tau_scale == "spread" else {}),
               **({"reward_truncated": truncated} if truncated is not None else {})}
        return self.items, row

    def _loss(self, pairs: list[ScoredPair]) -> dict:
        return self._pair_losses(pairs, self.tau)

    def _finish_row(self, row: dict, terms: dict) -> dict:
        """Level-set purity and the branches' mean margins (length-normalised log pi(y'|x)
        minus log pi(y|x); None when a branch has no pair), measured on the pairs trained,
        with the log-probs of the step's forward pass, i.e. under the model as it was just
        before the step's update."""
        pairs, tau = self.items, self.tau
        logp, logp_prompt = terms.pop("logp", []), terms.pop("logp_prompt", [])
        purity = level_set_purity([p.reward for p in pairs], [p.reward_prompt for p in pairs],
                                  logp, logp_prompt, self.args.purity_margins)
        ranked = [self._branch_is_rank(p, tau) for p in pairs]
        margins = [b - a for a, b in zip(logp, logp_prompt)]
        if self.args.kl_coef == 0:
            terms.pop("loss_kl", None)
        zero = {"loss": 0.0, "loss_rank": 0.0, "loss_wsft": 0.0, "loss_anchor": 0.0,
                **({"loss_kl": 0.0} if self.args.kl_coef > 0 else {})}
        return {**row, **zero, **terms,
                "margin_rank": mean_or_none([m for m, r in zip(margins, ranked) if r]),
                "margin_weighted": mean_or_none([m for m, r in zip(margins, ranked) if not r]),
                "purity": {str(e): share for e, (share, _) in purity.items()},
                "purity_n": {str(e): n for e, (_, n) in purity.items()}}

    def _save_run(self, out: Path, model) -> None:
        super()._save_run(out, model)
        plot_purity(self.metrics, out / "purity.png")
