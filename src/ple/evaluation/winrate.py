"""`ple winrate A B`: two models' responses to the same queries, compared by a judge.

The paper's protocol (Figure 2a): each pair is judged twice, with the responses' positions
swapped. From model A's side: *win* if A is preferred in both orders, *lose* if B is, *tie*
otherwise (each preferred once, which is what a position-biased judge produces, or no
preference in an order). It is the rule of `ple annotate report` (ple.evaluation.pairwise).

A and B are `eval_samples.jsonl` files (records with `query` and `response`), or
directories holding one. Pairs are matched by exact query; queries in only one file are
counted in the report.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ple.errors import UserError
from ple.evaluation.judges import API_KEY_ENV, Judge, Verdict
from ple.evaluation.pairwise import OUTCOMES, Matched, Pair, labels, match, outcome

SAMPLES_FILE = "eval_samples.jsonl"
RULE = ("each pair judged twice, responses in both orders: win if model A was preferred in "
        "both orders, lose if model B was, tie otherwise")


def preferred_model(verdict: Verdict, a_first: bool) -> str:
    """"A", "B" or "equal": the model whose response the judge preferred in one order."""
    if verdict.preferred is None:
        return "equal"
    return "A" if (verdict.preferred == 0) == a_first else "B"


def judge_both_orders(judge: Judge, pairs: list[Pair]) -> list[dict]:
    """One record per pair: its outcome and both orders' verdicts. Both orders go to the
    judge in one call, so a batched judge batches over them all."""
    items = [(p.query, p.response_a, p.response_b) for p in pairs] + \
            [(p.query, p.response_b, p.response_a) for p in pairs]
    verdicts = judge.judge(items)
    if len(verdicts) != len(items):
        raise ValueError(f"judge {judge.description} gave {len(verdicts)} verdicts for "
                         f"{len(items)} items")
    records = []
    for p, ab, ba in zip(pairs, verdicts[:len(pairs)], verdicts[len(pairs):]):
        first, second = preferred_model(ab, a_first=True), preferred_model(ba, a_first=False)
        records.append({"query": p.query, "response_a": p.response_a,
                        "response_b": p.response_b, "outcome": outcome(first, second),
                        "orders": [{"shown": "AB", "preferred": first, **ab.evidence},
                                   {"shown": "BA", "preferred": second, **ba.evidence}]})
    return records


def tally(outcomes: list[str]) -> dict:
    """Counts of win, tie and lose, their number n, and each as a fraction of n."""
    counts = Counter(outcomes)
    n = len(outcomes)
    return {**{k: counts[k] for k in OUTCOMES}, "n": n,
            **{f"{k}_rate": counts[k] / n if n else None for k in OUTCOMES}}


def samples_file(path: str) -> str:
    """The eval samples file a path names: the file itself, or a directory's
    eval_samples.jsonl."""
    p = Path(path)
    if p.is_dir():
        if not (p / SAMPLES_FILE).is_file():
            raise UserError(f"{path}: a directory without {SAMPLES_FILE} (`ple eval` writes "
                            f"it)")
        return str(p / SAMPLES_FILE)
    return path


def winrate_report(judge: Judge, matched: Matched, file_a: str, file_b: str) -> dict:
    records = judge_both_orders(judge, matched.pairs)
    label_a, label_b = labels(file_a, file_b)
    return {"kind": "ple-winrate", "version": 1,
            "model_a": {"label": label_a, "file": file_a, "records": matched.n_a,
                        "unmatched": matched.only_a},
            "model_b": {"label": label_b, "file": file_b, "records": matched.n_b,
                        "unmatched": matched.only_b},
            "judge": judge.description, "rule": RULE,
            **tally([r["outcome"] for r in records]), "pairs": records}


def describe(report: dict) -> str:
    a, b = report["model_a"], report["model_b"]
    counts = ", ".join(f"{k} {report[k]} ({100 * report[k + '_rate']:.0f}%)" for k in OUTCOMES)
    lines = [f"{a['label']} (A) vs {b['label']} (B), judge {report['judge']}: {report['n']} "
             f"pairs, each judged in both orders",
             f"  outcomes of A: {counts}"]
    if a["unmatched"] or b["unmatched"]:
        lines.append(f"  not judged (query in one file only): {a['unmatched']} of "
                     f"{a['records']} in A, {b['unmatched']} of {b['records']} in B")
    return "\n".join(lines)


def add_arguments(sub) -> None:
    """Add `winrate` to the subparsers `sub` of the ple command."""
    p = sub.add_parser(
        "winrate", help="win/tie/lose of model A against model B, by a judge",
        description="Judge two models' responses to the same queries, each pair in both "
        "orders (the paper's protocol): win if A is preferred in both, lose if B is, tie "
        "otherwise. Writes the counts, rates and every verdict as JSON.")
    p.add_argument("file_a", metavar="A", help=f"model A's {SAMPLES_FILE}, or a directory "
                   f"holding one (records with `query` and `response`)")
    p.add_argument("file_b", metavar="B", help="model B's, the same way")
    p.add_argument("--judge", choices=("reward", "llm", "http"), required=True,
                   help="reward: the higher reward wins (--reward); llm: a local causal LM "
                   "(--judge-model); http: an OpenAI-compatible API (--base-url, "
                   f"--judge-model, key in ${API_KEY_ENV})")
    p.add_argument("--output", required=True, help="the JSON report to write")
    p.add_argument("--reward", help="judge reward: a --reward spec (`vader`, a reward-model "
                   "directory or hub id, module:function)")
    p.add_argument("--reward-label", type=int, default=1, help="judge reward: the logit a "
                   "classifier reward reads (default 1)")
    p.add_argument("--judge-model", help="judge llm: a model as --model takes it (`tiny`, "
                   "`default`, a directory, a .gguf file); judge http: the API's model name")
    p.add_argument("--base-url", help="judge http: the API's base URL, e.g. "
                   "https://api.openai.com/v1 (requests go to BASE/chat/completions)")
    p.add_argument("--timeout", type=float, default=60.0, help="judge http: seconds to "
                   "wait for each answer (default 60)")


def _needs(args, flag: str) -> None:
    if getattr(args, flag.lstrip("-").replace("-", "_")) is None:
        raise UserError(f"--judge {args.judge} needs {flag}")


def make_judge(args) -> Judge:
    from ple.evaluation.judges import HTTPJudge, LLMJudge, RewardJudge

    if args.judge == "reward":
        _needs(args, "--reward")
        from ple.rewards import load_reward

        # The task only names a default reward, and the spec is given.
        return RewardJudge(load_reward(args.reward, task="", label=args.reward_label))
    _needs(args, "--judge-model")
    if args.judge == "llm":
        from ple.models import load_policy

        return LLMJudge(args.judge_model, *load_policy(args.judge_model))
    _needs(args, "--base-url")
    if not args.timeout > 0:
        raise UserError(f"--timeout {args.timeout:g}: must be positive")
    return HTTPJudge(args.base_url, args.judge_model, args.timeout)


def _check_output(path: str) -> None:
    out = Path(path)
    if out.is_dir():
        raise UserError(f"--output {path} is a directory; give a file name")
    if not out.resolve().parent.is_dir():
        raise UserError(f"--output {path}: the directory {out.parent} does not exist")


def run(args) -> None:
    """Check every input, then judge, then write the report whole (never a partial one)."""
    file_a, file_b = samples_file(args.file_a), samples_file(args.file_b)
    matched = match(file_a, file_b)
    _check_output(args.output)
    judge = make_judge(args)
    report = winrate_report(judge, matched, file_a, file_b)
    Path(args.output).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    print(describe(report))
    print(f"Wrote {args.output}")
