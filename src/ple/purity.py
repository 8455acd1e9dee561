"""Level-set purity: the quantity the paper's theory (Section 5) is about, measured.

Definition 5.1 calls the level set L(e, R) = {x | R(x, y') - R(x, y) >= e} pure for the model
pi when pi(y'|x) > pi(y|x) for every x in it; Lemma 5.2 says PLE grows the pure region as its
threshold falls. ple measures how close each level set is to pure: the share of its pairs on
which the model already agrees with the reward.
"""

from __future__ import annotations


def level_set_purity(s: list[float], s_prompt: list[float], logp: list[float],
                     logp_prompt: list[float],
                     margins: list[float]) -> dict[float, tuple[float | None, int]]:
    """Definition 5.1, as a share: for each margin e, among the pairs with s' - s >= e (the
    level set L(e, R)), the share on which the model's length-normalised log-probability
    (Eq. 3) of y' exceeds that of y. The set is pure iff the share is 1.

    Returns {e: (share, count)}, where count is the size of L(e, R); share is None when
    no pair reaches the margin (the share of an empty set is undefined, not 0). The
    length-normalised log-probability stands in for pi(.|x) because it is the quantity
    Eq. 3 orders, so the share shows whether the ranking loss has done its job.
    """
    gaps = [b - a for a, b in zip(s, s_prompt, strict=True)]
    agrees = [b > a for a, b in zip(logp, logp_prompt, strict=True)]
    result = {}
    for e in margins:
        members = [agree for gap, agree in zip(gaps, agrees, strict=True) if gap >= e]
        result[e] = (sum(members) / len(members) if members else None, len(members))
    return result
