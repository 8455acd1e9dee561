"""`ple eval`: flags (one per EvalConfig field) and the printed summary."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ple.config import true_or_false
from ple.evaluation.evaluate import FLAGS, EvalConfig
from ple.tasks import TASKS


def add_arguments(sub) -> None:
    """Add `eval` to the subparsers `sub` of the ple command."""
    parser = sub.add_parser(
        "eval", help="measure a model or adapter on a task's test split: reference "
        "perplexity, BLEU, reward, and guards against reward hacking",
        description="Evaluate a base model, or a trained adapter on it, on N test examples: "
        "perplexity of the reference responses, sacrebleu BLEU of the generated responses "
        "against them, mean reward with its standard error, and the responses' perplexity "
        "under the frozen base model and distinct-1/2. Writes eval.json and "
        "eval_samples.jsonl to --output-dir.")
    hints = typing.get_type_hints(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        kind, extra = hints[f.name], {}
        if kind is bool:
            extra["action"] = "store_true"
        elif kind == bool | None:
            extra["type"] = true_or_false
        elif kind in (int, float):
            extra["type"] = kind
        if f.name == "task":
            extra["choices"] = sorted(TASKS)
        # Absent flags keep the dataclass defaults, which the help texts state.
        parser.add_argument(FLAGS[f.name], dest=f.name, default=argparse.SUPPRESS,
                            help=f.metadata["help"], **extra)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace eval.json and eval_samples.jsonl of an earlier "
                        "evaluation in --output-dir")


def describe(result: dict) -> str:
    """A few lines for the terminal; eval.json has everything."""
    cfg = result["config"]
    what = cfg["model"] + (f" + adapter {cfg['adapter']}" if cfg["adapter"] else "")
    decoding = "greedy" if cfg["greedy"] else "sampled"
    lines = [f"ple eval: {what} on {cfg['task']}, {result['n']} test examples of "
             f"{result['test_data']} ({decoding}, seed {cfg['seed']})"]
    if result["records_without_reference"]:
        lines.append(f"  skipped {result['records_without_reference']} records that are not "
                     f"test examples (negative or 8-word IMDb reviews)")
    if result["queries_dropped_too_long"]:
        lines.append(f"  dropped {result['queries_dropped_too_long']} queries longer than "
                     f"{cfg['max_prompt_tokens']} tokens")
    if result["reference_perplexity"] is None:
        lines.append("  perplexity and BLEU: none, the test split has no references "
                     "(give --test-data)")
    else:
        lines.append(f"  reference perplexity {result['reference_perplexity']:.2f} "
                     f"({result['reference_tokens']} tokens, "
                     f"{result['references_truncated']} references truncated)")
        lines.append(f"  BLEU {result['bleu']:.2f} ({result['bleu_signature']})")
    se = result["reward_se"]
    lines.append(f"  reward {result['reward_mean']:+.3f}" + (f" ± {se:.3f}" if se is not None
                                                             else "")
                 + f" ({result['reward']})")
    for spec, value in result["extra_rewards"].items():
        lines.append(f"  reward {value['mean']:+.3f}" + (f" ± {value['se']:.3f}"
                                                          if value["se"] is not None else "")
                     + f" ({spec}, not trained on)")
    lines.append(f"  guards: base-model perplexity of the responses "
                 f"{result['base_perplexity']:.2f}, distinct-1 {result['distinct_1']:.3f}, "
                 f"distinct-2 {result['distinct_2']:.3f}")
    lines.append(f"Wrote {cfg['output_dir']}/eval.json and eval_samples.jsonl")
    return "\n".join(lines)


def run(args) -> None:
    from ple.evaluation.evaluate import evaluate

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EvalConfig)
              if hasattr(args, f.name)}
    print(describe(evaluate(EvalConfig(**values), args.overwrite)))
