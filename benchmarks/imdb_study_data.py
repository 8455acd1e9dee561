"""The data of the IMDb results study (docs/results/imdb/), cut from ../shared/data/imdb:

- `imdb_train.jsonl`: the first 2,000 reviews of train.jsonl, as they are ({"text", "label"}).
  Every method trains from these: their 8-word openings are the queries, their positive
  reviews the SFT data.
- `imdb_valid.jsonl`: 256 positive reviews of train.jsonl after those 2,000, for tuning
  (openings and references as `ple eval --test-data` reads them). Disjoint from the
  training queries; the test split (test.jsonl) is only for the final report.

Deterministic: the same files every time, so a study can span sessions.

    python benchmarks/imdb_study_data.py --out runs/study-data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"
N_TRAIN, N_VALID = 2000, 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a directory outside the repository")
    out = Path(parser.parse_args().out)
    # split("\n"), not splitlines(): reviews hold Unicode line separators inside strings.
    lines = [x for x in (SHARED / "train.jsonl").read_text(encoding="utf-8").split("\n") if x]
    rest = [line for line in lines[N_TRAIN:] if json.loads(line)["label"] == 1]
    if len(rest) < N_VALID:
        raise SystemExit(f"{SHARED / 'train.jsonl'}: only {len(rest)} positive reviews after "
                         f"the first {N_TRAIN}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "imdb_train.jsonl").write_text("\n".join(lines[:N_TRAIN]) + "\n", encoding="utf-8")
    (out / "imdb_valid.jsonl").write_text("\n".join(rest[:N_VALID]) + "\n", encoding="utf-8")
    print(f"wrote {out}/imdb_train.jsonl ({N_TRAIN} reviews) and {out}/imdb_valid.jsonl "
          f"({N_VALID} positive reviews)")


if __name__ == "__main__":
    main()
