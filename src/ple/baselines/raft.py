"""RAFT (Dong et al. 2023), as LMFlow's aligner runs it with the local strategy.

Per step: sample K responses to each query from the plain prompt (one generate call), keep
the best by reward for each query, and fine-tune on the kept (query, response) pairs with
SFT (Eq. 1). The paper's baseline is RAFT-4 (K = 4).
"""

from __future__ import annotations

import time

from ple.config import RAFTConfig
from ple.online import OnlineTrainer
from ple.rewards import checked_scores
from ple.update import gather, share


class RAFTTrainer(OnlineTrainer):
    """Train a model with RAFT (see ple.online.OnlineTrainer for the arguments)."""

    config_class = RAFTConfig

    def _step(self, step: int, queries: list[str]) -> dict:
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
        updates = self.updater.steps([(plain[i], responses[j]) for i, j in enumerate(best)],
                                    self._sft_losses)
        self.totals["optimizer_steps"] += len(updates)
        t3 = time.perf_counter()
        for i, query in enumerate(queries):
            self.writer.sample({
                "step": step, "query": query, "response": texts[best[i]],
                "reward": scores[best[i]], "rewards": scores[i * k:(i + 1) * k]})
        n = len(queries)
        return {"step": step, "n_queries": n, "n_kept": n,
                "reward_mean": sum(scores) / len(scores),
                "reward_best_mean": sum(scores[j] for j in best) / n,
                "loss": sum(u["loss"] for u in updates) / len(updates),
                "grad_norm": sum(u["grad_norm"] for u in updates) / len(updates),
                "n_updates": len(updates),
                "seconds_generate": t1 - t0, "seconds_score": t2 - t1, "seconds_train": t3 - t2,
                **self.totals}

    def _progress(self, row: dict) -> dict:
        return {"r": f"{row['reward_mean']:.2f}", "r_best": f"{row['reward_best_mean']:.2f}"}
