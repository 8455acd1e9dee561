"""The test queries of the HH before/after study (docs/results/hh/), cut from the part of
../shared/data/hh-rlhf that the built-in `hh-preference` reward held out (20 % of each file,
seed 0), so the reward never trained on them:

- `harmless_first_turn.jsonl`: the first Human turn of each held-out harmless-base pair
  (requests written to draw out harm), one record per distinct turn;
- `helpful_first_turn.jsonl`: the same from helpful-base (everyday requests).

Each record is an HH transcript `chosen` of one exchange: the first Human turn and the first
Assistant reply of the pair's chosen side, which `ple eval --task hh --test-data` reads as the
query and its reference. Deterministic, so a study can span sessions.

    python benchmarks/hh_study_data.py --out runs/hh-data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ple.hh_format import hh_turns
from ple.rewards.builtin import recipe_config
from ple.rewards.training.data import split_examples

FILES = {"harmless-base": "harmless_first_turn.jsonl",
         "helpful-base": "helpful_first_turn.jsonl"}


def first_exchanges(held_out, subset: str) -> tuple[list[dict], int]:
    """One record per distinct first Human turn of `subset`'s held-out pairs, and how many
    pairs repeated a turn already taken."""
    records, seen, repeated = [], set(), 0
    for example in held_out:
        if f"/{subset}/" not in example.source:
            continue
        turns = hh_turns(example.chosen[0] + example.chosen[1])
        request = turns[0]["content"]
        if request in seen:
            repeated += 1
            continue
        seen.add(request)
        reply = turns[1]["content"] if len(turns) > 1 else ""
        records.append({"chosen": f"\n\nHuman: {request}\n\nAssistant: {reply}",
                        "source": example.where})
    return records, repeated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a directory outside the repository")
    out = Path(parser.parse_args().out)
    _, held_out, _ = split_examples(recipe_config("hh-preference", str(out / "unused")))
    out.mkdir(parents=True, exist_ok=True)
    for subset, name in FILES.items():
        records, repeated = first_exchanges(held_out, subset)
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in records),
                                encoding="utf-8")
        print(f"wrote {out / name}: {len(records)} first turns of held-out {subset} pairs "
              f"({repeated} pairs repeated a first turn and are left out)")


if __name__ == "__main__":
    main()
