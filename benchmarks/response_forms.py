"""What form a study's responses take, beside their reward: how many open with the run's
three most common first two words (a collapse of form that lowers distinct-2 and that a
reward may pay for), how many speak as an assistant rather than continue the review, and
how many mention the film at all. Reads each run's eval_samples.jsonl under a `ple compare`
output_dir; prints one Markdown row per run and seed. Where the study has BASE's responses to
the same test openings, the row also gives the run's reward minus BASE's, paired by opening,
over every opening and over the openings whose response is not assistant-speak: how much of
a rise survives without the assistant register (a check, not an unbiased estimate: which
responses drop out depends on the run).

    python benchmarks/response_forms.py docs/results/imdb/test base:0 ple-kl0.3:0 ple:0
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

# The assistant register is the library's (every evaluation reports its share, and
# `ple compare`'s guards hold it against BASE's): one pattern, not two.
from ple.evaluation.metrics import ASSISTANT_SPEAK, is_assistant_speak, paired_difference

FILM = re.compile(r"\b(film|movie|actor|actress|director|cast|scene|performance|plot|script|"
                  r"story)s?\b", re.IGNORECASE)


def opener_share(responses: list[str], top: int = 3, words: int = 2) -> float:
    """Share of responses whose first `words` words are one of the `top` most common."""
    openers = collections.Counter(" ".join(r.split()[:words]) for r in responses)
    return sum(n for _, n in openers.most_common(top)) / len(responses)


def share_matching(responses: list[str], pattern: re.Pattern) -> float:
    return sum(bool(pattern.search(r)) for r in responses) / len(responses)


def forms(responses: list[str]) -> dict[str, float]:
    return {"top-3 openers": opener_share(responses),
            "assistant-speak": share_matching(responses, ASSISTANT_SPEAK),
            "mentions the film": share_matching(responses, FILM)}


def paired_rise(run: list[dict], base: list[dict], keep=lambda response: True) -> tuple:
    """Mean and standard error of run's reward minus BASE's, paired by opening, over the
    openings whose run response `keep` accepts; and how many those are."""
    kept = {r["query"]: r["reward"] for r in run if keep(r["response"])}
    return paired_difference(kept, {b["query"]: b["reward"] for b in base})


def read_samples(folder: Path) -> list[dict]:
    with open(folder / "eval_samples.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a `ple compare` output_dir")
    parser.add_argument("runs", nargs="+", help="NAME:SEED, `base` for the untrained model")
    args = parser.parse_args()
    print("| run | seed | n | top-3 openers | assistant-speak | mentions the film | "
          "most common openers | RM − BASE | RM − BASE, not assistant-speak (n) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in args.runs:
        name, seed = spec.rsplit(":", 1)
        base_folder = args.study / "base" / f"seed{seed}"
        folder = base_folder if name == "base" else args.study / f"runs/{name}/seed{seed}"
        samples = read_samples(folder)
        responses = [r["response"] for r in samples]
        shares = forms(responses)
        common = collections.Counter(" ".join(r.split()[:2]) for r in responses).most_common(3)
        rises = ["–", "–"]
        if name != "base" and (base_folder / "eval_samples.jsonl").exists():
            base = read_samples(base_folder)
            mean, se, _ = paired_rise(samples, base)
            kept_mean, kept_se, kept = paired_rise(
                samples, base, lambda response: not is_assistant_speak(response))
            rises = [f"{mean:+.3f} ± {se:.3f}", f"{kept_mean:+.3f} ± {kept_se:.3f} ({kept})"]
        print(f"| {name} | {seed} | {len(responses)} | "
              + " | ".join(f"{100 * v:.1f} %" for v in shares.values())
              + " | " + ", ".join(f"{o!r} {n}" for o, n in common)
              + " | " + " | ".join(rises) + " |")


if __name__ == "__main__":
    main()
