"""RAFT (Dong et al. 2023), as LMFlow's aligner runs it with the local strategy.

Per step: sample K responses to each query from the plain prompt (one generate call), keep
the best by reward for each query, and fine-tune on the kept (query, response) pairs with
SFT (Eq. 1), one optimizer step. The paper's baseline is RAFT-4 (K = 4).
"""

from __future__ import annotations

import time

from ple.config import RAFTConfig
from ple.online import OnlineTrainer, gather, share
from ple.rewards import checked_scores


class RAFTTrainer(OnlineTrainer):
    """Train a model with RAFT (see ple.online.OnlineTrainer for the arguments)."""

    config_class = RAFTConfig

    def _rollout(self, step: int, queries: list[str]) -> tuple[list, dict]:
        k = self.args.raft_k
        t0 = time.perf_counter()
        mine = share(self.accelerator, queries)
        plain = [self.prompter.ids(q) for q in mine]
        responses, texts = self._sample([p for p in plain for _ in range(k)])
        t1 = time.perf_counter()
        scores = checked_scores(self.reward, [q for q in mine for _ in range(k)], texts,
                                responses)
        t2 = time.perf_counter()
        # Each process's lists are its queries' block, so concatenated they are in order.
        plain, responses, texts, scores = gather(self.accelerator, plain, responses, texts, scores)
        self._count_generated(responses)
        best = [max(range(i * k, (i + 1) * k), key=scores.__getitem__)
                for i in range(len(queries))]
        for i, query in enumerate(queries):
            self.writer.sample({
                "step": step, "query": query, "response": texts[best[i]],
                "reward": scores[best[i]], "rewards": scores[i * k:(i + 1) * k]})
        n = len(queries)
        row = {"step": step, "n_queries": n, "n_kept": n, "n_updates": 1,
               "reward_mean": sum(scores) / len(scores),
               "reward_best_mean": sum(scores[j] for j in best) / n,
               "seconds_generate": t1 - t0, "seconds_score": t2 - t1}
        return [(plain[i], responses[j]) for i, j in enumerate(best)], row

    def _loss(self, examples: list) -> dict:
        return self._sft_losses(examples)
