"""Replay of D_train: Algorithm 1 replays every pair generated so far at every step, so
step t trains on t steps' pairs (in its one optimizer step) and a run of S steps on
S(S+1)/2 steps' worth of them. This runs PLE twice, the demo's
settings (`ple demo`: imdb, VADER, SFT anchor 1) with the same seed, once with a replay
window of 1 step and once replaying all of D_train, and reports time per step over the run
and the held-out reward, perplexity under the base model and distinct-2 after.

    python benchmarks/replay_bench.py --model tiny --steps 3 --eval-queries 4   # a quick check
    python benchmarks/replay_bench.py --out /tmp/replay.json --append-markdown BENCHMARKS.md

The defaults (6 steps, 32 held-out queries) take about 6 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from benchlib import add_output_arguments, publish

WINDOWS = {"window 1": 1, "full replay": 0}


def run(args, window: int, output_dir: str) -> dict:
    """One `ple train` run in this process; its metrics rows and held-out evaluation."""
    from ple.cli import DEMO
    from ple.config import load_config
    from ple.training import run_training

    cfg = load_config(None, {**DEMO, "model": args.model, "max_steps": args.steps,
                             "save_steps": args.steps, "eval_queries": args.eval_queries,
                             "replay_window": window, "seed": args.seed,
                             "output_dir": output_dir})
    started = time.perf_counter()
    summary = run_training(cfg, overwrite=True)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in open(Path(output_dir) / "metrics.jsonl")]
    steps = [{"step": r["step"], "buffer_size": r["buffer_size"],
              "pairs": r["n_rank"] + r["n_weighted"],
              "seconds": r["seconds_generate"] + r["seconds_score"] + r["seconds_train"],
              "seconds_train": r["seconds_train"], "reward_mean": r["reward_mean"]}
             for r in rows]
    held_out = ("reward_mean", "reward_se", "base_perplexity", "distinct_2")
    return {"batch_size": cfg.batch_size, "steps": steps, "wall_seconds": wall,
            "eval_before": {k: summary["eval_before"][k] for k in held_out},
            "eval_after": {k: summary["eval_after"][k] for k in held_out}}


def report(args, results: dict) -> list[str]:
    first = next(iter(results.values()))
    lines = [f"PLE on `{args.model}`, imdb with VADER, the demo's settings, {args.steps} "
             f"steps of {first['batch_size']} queries, seed {args.seed}; held-out: "
             f"{args.eval_queries} built-in queries, plain responses, reward before training "
             f"{first['eval_before']['reward_mean']:+.3f}.", "",
             "| replay | pairs trained | step s (first, last) | all steps s | held-out reward after | "
             "base perplexity after | distinct-2 after |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        steps, after = r["steps"], r["eval_after"]
        lines.append(f"| {name} | {sum(s['pairs'] for s in steps)} | "
                     f"{steps[0]['seconds']:.1f}, {steps[-1]['seconds']:.1f} | "
                     f"{sum(s['seconds'] for s in steps):.1f} | "
                     f"{after['reward_mean']:+.3f} ± {after['reward_se']:.3f} | "
                     f"{after['base_perplexity']:.1f} | {after['distinct_2']:.3f} |")
    names = list(results)
    lines += ["", "| step | " + " | ".join(f"{n}: pairs, train s" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for i, step in enumerate(results[names[0]]["steps"]):
        cells = " | ".join(f"{results[n]['steps'][i]['pairs']}, "
                           f"{results[n]['steps'][i]['seconds_train']:.1f}" for n in names)
        lines.append(f"| {step['step']} | {cells} |")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="default, tiny, or a path")
    parser.add_argument("--steps", type=int, default=6, help="PLE steps per run (default 6)")
    parser.add_argument("--eval-queries", type=int, default=32,
                        help="held-out queries evaluated before and after (default 32)")
    add_output_arguments(parser)
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    # peft calls a transformers API that transformers 5 has deprecated (as ple.cli filters).
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                            category=FutureWarning)
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run(args, window, f"{tmp}/{i}")
                   for i, (name, window) in enumerate(WINDOWS.items())}
    lines = report(args, results)
    publish(args, "Replay of D_train: window 1 against full replay", lines, {"runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
