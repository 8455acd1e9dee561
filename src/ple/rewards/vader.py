"""VADER sentiment (lexicon and rules, no weights to fetch): the offline reward for imdb."""

from __future__ import annotations


class VaderReward:
    """R(x, y) = VADER compound score of the response y, in [-1, 1].

    Only y is scored: the review opening x is the same for y and y', and scoring it would
    only add the same offset to both.
    """

    name = "vader"

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, queries: list[str], responses: list[str]) -> list[float]:
        return [self._analyzer.polarity_scores(r)["compound"] for r in responses]
