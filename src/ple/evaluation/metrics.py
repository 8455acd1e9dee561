"""Plain statistics of a set of responses: mean with standard error, distinct-n, perplexity."""

from __future__ import annotations

import math


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams / all n-grams over all texts (Li et al. 2016), on lower-cased words."""
    grams = []
    for text in texts:
        words = text.lower().split()
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def perplexity(token_logps_sum: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token)."""
    return math.exp(-token_logps_sum / n_tokens)


def corpus_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacrebleu corpus BLEU (0-100) of hypotheses against one reference each, with its
    signature: 13a tokenisation, case-sensitive, exponential smoothing (sacrebleu's defaults),
    so the number is comparable with any other default sacrebleu score."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    score = metric.corpus_score(hypotheses, [references]).score
    return score, str(metric.get_signature())
