"""Several runs at once on a CPU: one process with all of torch's threads against J processes
at once with 1/J of them each, as `ple compare --jobs J` runs a study. Each process repeats a
cycle the size of a PLE step: sampling 2B responses of N new tokens, then a forward and
backward pass over them through a LoRA adapter (r 8, as every run of the study). Throughput
is cycles per minute, all processes together.

    python benchmarks/threads_bench.py --append-markdown BENCHMARKS.md   # about 4 minutes
    python benchmarks/threads_bench.py --model tiny --cycles 1 --max-new-tokens 4   # a check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import add_output_arguments, publish


def cycles(args) -> list[float]:
    """Seconds of each measured cycle in this process, after one warm-up cycle."""
    import torch
    from peft import get_peft_model

    from ple.models import load_policy, paper_lora
    from ple.tasks import builtin_queries

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, tokenizer = load_policy(args.model, args.seed)
    model = get_peft_model(model, paper_lora())
    tokenizer.padding_side = "left"
    queries = builtin_queries("imdb", "train")[:2 * args.batch_size]
    batch = tokenizer(queries, return_tensors="pt", padding=True)
    seconds = []
    for _ in range(args.cycles + 1):
        start = time.perf_counter()
        with torch.no_grad():
            ids = model.generate(**batch, max_new_tokens=args.max_new_tokens,
                                 min_new_tokens=args.max_new_tokens, do_sample=True,
                                 pad_token_id=tokenizer.pad_token_id)
        model(ids, labels=ids).loss.backward()
        model.zero_grad()
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def run_at_once(args, processes: int, threads: int, tmp: Path) -> dict:
    """`processes` children started together, each with `threads` threads."""
    results = [tmp / f"{processes}-{i}.json" for i in range(processes)]
    children = [subprocess.Popen([sys.executable, __file__, "--model", args.model,
                                  "--batch-size", str(args.batch_size),
                                  "--max-new-tokens", str(args.max_new_tokens),
                                  "--cycles", str(args.cycles), "--seed", str(args.seed),
                                  "--threads", str(threads), "--result", str(r)])
                for r in results]
    if any(child.wait() for child in children):
        raise SystemExit("a child process failed")
    seconds = [json.loads(r.read_text()) for r in results]
    per_minute = sum(60 * len(s) / sum(s) for s in seconds)
    return {"processes": processes, "threads_each": threads, "cycle_seconds": seconds,
            "cycles_per_minute": per_minute}


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="default, tiny, or a path")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="queries per cycle B; 2B sequences (default 8, the study's)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="length of every response (default 32, the study's)")
    parser.add_argument("--cycles", type=int, default=3,
                        help="measured cycles per process after one warm-up (default 3)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="processes at once in the second setting (default 2)")
    add_output_arguments(parser)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.result:
        Path(args.result).write_text(json.dumps(cycles(args)))
        return 0
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        one = run_at_once(args, 1, threads, Path(tmp))
        many = run_at_once(args, args.jobs, max(1, threads // args.jobs), Path(tmp))
    ratio = many["cycles_per_minute"] / one["cycles_per_minute"]
    lines = [f"Model `{args.model}`, LoRA r 8; a cycle samples {2 * args.batch_size} "
             f"responses of {args.max_new_tokens} new tokens, then one forward and backward "
             f"pass over them; 1 warm-up and {args.cycles} measured cycles per process.", "",
             "| setting | processes | threads each | seconds a cycle (mean) | "
             "cycles a minute, all processes |", "|---|---|---|---|---|"]
    for name, r in (("one run", one), (f"--jobs {args.jobs}", many)):
        mean = sum(map(sum, r["cycle_seconds"])) / sum(map(len, r["cycle_seconds"]))
        lines.append(f"| {name} | {r['processes']} | {r['threads_each']} | {mean:.2f} | "
                     f"{r['cycles_per_minute']:.2f} |")
    lines += ["", f"Throughput of --jobs {args.jobs} over one run: **{ratio:.2f}x**."]
    publish(args, "Several runs at once on a CPU (ple compare --jobs)", lines,
            {"one": one, "jobs": many, "ratio": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
