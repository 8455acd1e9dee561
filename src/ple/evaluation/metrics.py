"""Plain statistics of a set of responses: mean with standard error, distinct-n, perplexity,
the KL of a policy from its base on its own responses, and the share in the assistant
register."""

from __future__ import annotations

import math
import re


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


def response_kl(policy_token_logps, base_token_logps) -> list[float]:
    """Per response, sum over its tokens of log pi(y_t | x, y_<t) - log pi_base(y_t | x, y_<t):
    rows of two [N, R] tensors of response-token log-probs, 0 at padding (as
    `ple.sequences.response_token_logprobs` gives them), one row per response.

    On responses sampled from pi itself (temperature 1, no top-p/top-k) its mean over
    responses is an unbiased estimate of the sequence-level KL(pi || pi_base), the x-axis
    of a reward-KL frontier (the DPO paper's Figure 2); under other decoding it is still
    the log-ratio on the responses evaluated. Differences are taken per token before
    summing, in float64, so a policy that equals its base gives exactly 0."""
    difference = policy_token_logps.double() - base_token_logps.double()
    return difference.sum(-1).tolist()


# The assistant register: a continuation of a film review that speaks as a chat assistant
# ("I'm thrilled to be your friendly AI companion", "I'm so glad I could contribute ...").
# The IMDb study's runs drifted into it (DPO: 45 % of its test responses, BASE 5 %) while
# base-perplexity and distinct-2 stayed inside their guards: the register is fluent and
# varied, and the sentiment reward pays for its enthusiasm. A phrase list, not a model, so
# that every evaluation can afford it and anyone can read what it counts; it also matches a
# few genuine reviews (an "AI" film, an assistant director), which is why a guard compares
# a run's share with BASE's on the same openings rather than with 0.
ASSISTANT_SPEAK = re.compile(r"\b(I'm|I am) (so |truly |really )?(glad|thrilled|delighted|"
                             r"happy|pleased|excited|proud)\b|\bassist|\byour (feedback|"
                             r"question|review)\b|\bAI\b", re.IGNORECASE)


def is_assistant_speak(text: str) -> bool:
    """Whether a response holds a phrase of the assistant register (ASSISTANT_SPEAK)."""
    return ASSISTANT_SPEAK.search(text) is not None


def assistant_speak_share(texts: list[str]) -> float:
    """Share of responses in the assistant register (is_assistant_speak); 0 for none."""
    return sum(map(is_assistant_speak, texts)) / len(texts) if texts else 0.0


def corpus_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacrebleu corpus BLEU (0-100) of hypotheses against one reference each, with its
    signature: 13a tokenisation, case-sensitive, exponential smoothing (sacrebleu's defaults),
    so the number is comparable with any other default sacrebleu score."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    score = metric.corpus_score(hypotheses, [references]).score
    return score, str(metric.get_signature())


def cut_to_response_length(references: list[str], responses: list[str]) -> list[str]:
    """Each reference cut to its response's length in whitespace words. An IMDb reference is
    the rest of a review, hundreds of words, against a continuation of a few dozen: uncut,
    BLEU's brevity penalty alone takes it to about 0.0002 for every model, so the column
    could not rank anything. Cut, BLEU compares the response with what the review really
    said over the same span."""
    return [" ".join(ref.split()[:len(resp.split())]) for ref, resp in zip(references, responses)]


# Student's t, 97.5 % quantile, by degrees of freedom: 95 % intervals from few seeds.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228}


def paired_difference(a: dict[str, float], b: dict[str, float]) -> tuple[float, float, int]:
    """Mean and standard error of a[q] - b[q] over the keys both hold (the same test
    queries scored for two models), and how many there were."""
    shared = [q for q in a if q in b]
    mean, se = mean_and_se([a[q] - b[q] for q in shared])
    return mean, se, len(shared)


def ci95(estimates: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean and half-width of a 95 % interval from per-seed (mean, standard error) pairs:
    one seed, its own 1.96 standard errors (test-set noise only); several, Student's t over
    the seeds' means, whose spread holds training noise and test-set noise alike."""
    means = [m for m, _ in estimates]
    if len(means) == 1:
        return means[0], 1.96 * estimates[0][1]
    mean, se = mean_and_se(means)
    return mean, T_975.get(len(means) - 1, 2.228) * se
