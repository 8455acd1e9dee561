"""D_train: every scored pair (x, y, y', s, s') generated so far, and which of them to replay."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoredPair:
    step: int                  # the step that generated it
    query: str
    prompt_ids: list[int]      # the plain query x: both responses are trained after it
    response_ids: list[int]    # y ~ pi(.|x)
    guided_ids: list[int]      # y' ~ pi(.|[p, x])
    reward: float              # s = R(x, y)
    reward_prompt: float       # s' = R(x, y'), scored against the plain query


class ReplayBuffer:
    """Algorithm 1 line 10 adds each step's pairs; lines 12-14 replay all of D_train.

    With `window` > 0, only the pairs of the last `window` steps are replayed (a deviation
    from the paper that bounds the cost of a step); the buffer still keeps everything.
    """

    def __init__(self, window: int = 0):
        self.window = window
        self.pairs: list[ScoredPair] = []

    def add(self, pairs: list[ScoredPair]) -> None:
        self.pairs.extend(pairs)

    def replay(self, step: int) -> list[ScoredPair]:
        if not self.window:
            return list(self.pairs)
        return [p for p in self.pairs if p.step > step - self.window]

    def __len__(self) -> int:
        return len(self.pairs)
