"""Which principle gives PLE the most to learn from? (issue 34, item 3) Principles compared by
sampling only, before any training.

PLE learns from the gap s' - s between a principle-guided response y' ~ pi(.|[p, x]) and a
plain one y ~ pi(.|x): a principle whose y' does not score above y teaches nothing, or the
wrong thing. For N openings x, one plain y and, for each of the task's shipped principles
(config key principle_name), one y', prompted exactly as `ple train` prompts them and both
scored as answers to x, as PLE scores them. Per principle: mean s', s' - s paired by opening,
P(s' > s), and the share of y' in the assistant register (a principle that teaches it
teaches drift). Row `plain` is a second plain sample instead of y': the gap of the better of
two samples with no principle at all.

    python benchmarks/principle_probe.py --model tiny --openings 4
    python benchmarks/principle_probe.py --openings 16 --reward vader
    python benchmarks/principle_probe.py --data runs/study-data/imdb_valid.jsonl \\
        --openings 128 --reward imdb-sentiment --json runs/principle-probe.json

Prints a Markdown table; --json writes every number and response.
"""

from __future__ import annotations

import argparse

from benchlib import publish
from probelib import paired_gap, sample_texts
from ple.evaluation.metrics import assistant_speak_share, mean_and_se
from ple.models import load_policy
from ple.rewards import load_reward
from ple.rollout import Prompter
from ple.tasks import TASKS, builtin_queries, load_queries


def table(rows: list[dict], plain_reward: tuple[float, float]) -> list[str]:
    lines = [f"Plain responses y: mean s {plain_reward[0]:+.3f} ± {plain_reward[1]:.3f}.", "",
             "| y' from | n | mean s' | s' − s | P(s' > s) | assistant register |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['principle']} | {r['n']} | {r['reward'][0]:+.3f} | "
                     f"{r['gap'][0]:+.3f} ± {r['gap'][1]:.3f} | "
                     f"{r['wins'][0]:.0%} ± {r['wins'][1]:.0%} | {r['assistant_speak']:.0%} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="imdb", choices=sorted(TASKS))
    parser.add_argument("--model", default="default")
    parser.add_argument("--reward", default=None, help="a --reward spec (default: the task's "
                        "offline reward, vader for imdb)")
    parser.add_argument("--data", help="queries as `ple train --data` reads them (default: "
                        "the task's built-in held-out queries)")
    parser.add_argument("--openings", type=int, default=16, help="the first N queries")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="out", help="write every number to this JSON file")
    parser.add_argument("--append-markdown", help="append a section to this file")
    args = parser.parse_args(argv)

    task = TASKS[args.task]
    queries = (load_queries(task, args.data) if args.data
               else builtin_queries(args.task, "heldout"))[:args.openings]
    model, tokenizer = load_policy(args.model, seed=args.seed)
    tokenizer.padding_side = "left"
    reward = load_reward(args.reward, args.task)
    use_chat = tokenizer.chat_template is not None

    def responses(principle: str | None, seed: int) -> tuple[list[str], list[float]]:
        prompter = Prompter(tokenizer, task, principle or "", use_chat)
        prompts = [prompter.ids(q, guided=principle is not None) for q in queries]
        texts = sample_texts(model, tokenizer, prompts, args.max_new_tokens, args.temperature,
                             args.batch_size, seed)
        return texts, reward.score(queries, texts)

    plain, s = responses(None, args.seed)
    # Every y' from the same seed, one apart from y's: the plain row then draws anew.
    variants = {"plain": None, **task.principles()}
    rows = []
    for name, principle in variants.items():
        texts, s_prime = responses(principle, args.seed + 1)
        paired = paired_gap(s, s_prime, 0.0)
        rows.append({"principle": name, "n": len(queries), "reward": mean_and_se(s_prime),
                     "gap": paired["gap"], "wins": paired["over_tau"],
                     "assistant_speak": assistant_speak_share(texts), "text": principle,
                     "examples": [{"query": q, "y": y, "y_prime": yp, "s": a, "s_prime": b}
                                  for q, y, yp, a, b in zip(queries, plain, texts, s, s_prime)]})
    title = (f"Principle probe: {args.task}, model {args.model}, reward {reward.name}, "
             f"{len(queries)} openings")
    publish(args, title, [f"### {title}", "", *table(rows, mean_and_se(s))],
            {"plain_reward": mean_and_se(s), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
