"""Measure `ple reward train` on the shared data slices (docs/reward-models.md).

Runs the real command in a subprocess, times it (wall clock, model loading and the held-out
evaluation included), then loads the saved directory the way `--reward` does and scores two
probe pairs, so the numbers come from a reward model that really serves.

    python benchmarks/reward_models.py imdb --out /tmp/rm-bench
    python benchmarks/reward_models.py tldr --out /tmp/rm-bench
    python benchmarks/reward_models.py hh --out /tmp/rm-bench
    python benchmarks/reward_models.py imdb --out /tmp/rm-quick --max-train-examples 64 \\
        --max-eval-examples 64        # a quick run to estimate the speed first

Extra flags after the name are passed to `ple reward train` and override the defaults below.
Outputs go under --out (never into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# The measured settings (docs/reward-models.md): about 30 and 15 minutes on 2 CPU cores.
RUNS = {
    "imdb": {
        "kind": "classifier",
        "data": SHARED / "imdb" / "train.jsonl",
        "eval_data": SHARED / "imdb" / "test.jsonl",
        "flags": ["--max-train-examples", "1600", "--probe-examples", "1600",
                  "--max-steps", "80", "--max-eval-examples", "1000", "--max-length", "256",
                  "--batch-size", "8"],
        "probe": ("", ["This movie was wonderful, the acting superb and I loved every minute.",
                       "This movie was terrible, boring and far too long. I hated it."]),
    },
    "tldr": {
        "kind": "preference",
        "data": SHARED / "tldr" / "pref_train.jsonl",
        "eval_data": SHARED / "tldr" / "pref_test.jsonl",
        "flags": ["--probe-examples", "1403", "--max-steps", "60", "--max-length", "96",
                  "--batch-size", "8"],
        "probe": None,  # filled from the first held-out pair
    },
    # HH has no train split here (shared/data/README.md): 20 % of helpful-base is held out.
    "hh": {
        "kind": "preference",
        "data": SHARED / "hh-rlhf" / "helpful-base" / "test.jsonl.gz",
        "eval_data": None,
        "flags": ["--eval-fraction", "0.2", "--skip-invalid-pairs", "true",
                  "--probe-examples", "1900", "--max-steps", "60", "--max-length", "128",
                  "--batch-size", "8"],
        "probe": ("\n\nHuman: How do I bake bread at home?\n\nAssistant:",
                  [" Mix flour, water, yeast and salt, let it rise, then bake it at 230 C.",
                   " I don't know."]),
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RUNS))
    parser.add_argument("--out", required=True, help="a directory outside the repository")
    args, extra = parser.parse_known_args()
    run = RUNS[args.name]
    out = Path(args.out) / args.name
    command = [sys.executable, "-m", "ple.cli", "reward", "train", "--kind", run["kind"],
               "--data", str(run["data"]),
               *(["--eval-data", str(run["eval_data"])] if run["eval_data"] else []),
               "--base", "default", "--output-dir", str(out), "--overwrite",
               *run["flags"], *extra]
    print("$ ple " + " ".join(command[3:]), flush=True)
    started = time.time()
    result = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.time() - started
    if result.returncode != 0:
        print(f"failed with exit code {result.returncode}")
        return result.returncode
    evaluation = json.loads((out / "reward_eval.json").read_text())

    from ple.rewards import load_reward

    reward = load_reward(str(out), args.name)
    if run["probe"]:
        query, texts = run["probe"]
        probe = list(zip(texts, reward.score([query] * len(texts), texts)))
    else:
        pair = json.loads(Path(run["eval_data"]).read_text().splitlines()[0])
        scores = reward.score([pair["prompt"]] * 2, [pair["chosen"], pair["rejected"]])
        probe = [("chosen", scores[0]), ("rejected", scores[1])]
    metric = evaluation["metric"]
    summary = {
        "name": args.name, "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "command": "ple " + " ".join(command[3:]),
        metric: evaluation[metric], "n_train": evaluation["n_train"],
        "n_eval": evaluation["n_eval"], "steps": evaluation["steps"],
        "wall_seconds": round(wall), "train_seconds": evaluation["train_seconds"],
        "eval_seconds": evaluation["eval_seconds"],
        "train_texts_truncated": evaluation["train_texts_truncated"],
        "eval_texts_truncated": evaluation["eval_texts_truncated"],
        "first_loss": evaluation["first_loss"], "last_loss": evaluation["last_loss"],
        "served_probe": [[text[:60], round(score, 3)] for text, score in probe],
        "serving_truncated": reward.truncated,
    }
    (Path(args.out) / f"{args.name}_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
