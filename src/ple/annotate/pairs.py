"""The order in which one annotator sees the pairs of `ple annotate`, and the fingerprint that
ties a judgments database to its pairs. The pairs themselves (two models' responses to the
same queries) are ple.evaluation.pairwise's, shared with `ple winrate`.
"""

from __future__ import annotations

import hashlib
import json
import random

from ple.evaluation.pairwise import ORDERS, Pair


def fingerprint(pairs: list[Pair]) -> str:
    """sha256 of the matched (query, response A, response B) triples, in order."""
    text = json.dumps([[p.query, p.response_a, p.response_b] for p in pairs],
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def schedule(n_pairs: int, seed: str) -> list[tuple[int, int]]:
    """One annotator's sequence of (pair id, order): every pair twice, once in each order.

    The first half shows every pair once, in a shuffled order and a random order of its two
    responses; the second half shows every pair again in a new shuffle with the responses
    swapped. So the two showings of a pair are never back to back (except with a single
    pair, where nothing else can stand between them). Deterministic in `seed`, so an
    annotator who comes back finds the same sequence.
    """
    rng = random.Random(hashlib.sha256(seed.encode("utf-8")).digest())
    ids = list(range(1, n_pairs + 1))
    first_order = {i: rng.choice(ORDERS) for i in ids}
    first = ids[:]
    rng.shuffle(first)
    second = ids[:]
    rng.shuffle(second)
    if n_pairs > 1 and second[0] == first[-1]:
        second = second[1:] + second[:1]
    return [(i, first_order[i]) for i in first] + [(i, 1 - first_order[i]) for i in second]
