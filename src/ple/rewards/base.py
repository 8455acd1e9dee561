"""What every reward is: R(x, y) for a batch of (query, response) pairs."""

from __future__ import annotations

import math
from typing import Protocol

from ple.errors import UserError


class RewardModel(Protocol):
    name: str

    def score(self, queries: list[str], responses: list[str]) -> list[float]:
        """One score per pair; higher is better aligned."""


def checked_scores(reward: RewardModel, queries: list[str], responses: list[str],
                   completion_ids: list[list[int]] | None = None) -> list[float]:
    """Score and refuse anything that is not one finite number per pair.

    A NaN would silently poison Eq. 5 and the branch rule, so it stops the run instead,
    naming the query it came from. An exception raised inside a reward (a bug in a user's
    reward function, say) keeps its traceback, with a note naming the reward.
    """
    try:
        if completion_ids is not None and getattr(reward, "wants_ids", False):
            raw = reward.score(queries, responses, completion_ids=completion_ids)
        else:
            raw = reward.score(queries, responses)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's reward function can raise anything
        e.add_note(f"(raised by reward `{reward.name}`)")
        raise
    try:
        scores = [float(s) for s in raw]
    except (TypeError, ValueError) as e:
        raise UserError(f"reward `{reward.name}` returned something that is not a number "
                        f"({e})") from None
    if len(scores) != len(responses):
        raise UserError(f"reward `{reward.name}` returned {len(scores)} scores for "
                        f"{len(responses)} responses")
    for query, value in zip(queries, scores):
        if not math.isfinite(value):
            raise UserError(f"reward `{reward.name}` gave {value} for query {query[:80]!r}")
    return scores
