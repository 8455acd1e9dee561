"""`ple eval`: flags (one per EvalConfig field) and the printed summary."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ple.config import from_namespace
from ple.evaluation.evaluate import EvalConfig


@dataclass
class EvalCommand:
    """The flags of `ple eval` that are not settings of the evaluation."""

    overwrite: bool = field(default=False, metadata={
        "help": "Replace eval.json and eval_samples.jsonl of an earlier evaluation in "
                "--output-dir."})


DESCRIPTION = (
    "Evaluate a base model, or a trained adapter on it, on N test examples: perplexity of the "
    "reference responses, sacrebleu BLEU of the generated responses against them, mean reward "
    "with its standard error, the KL of the adapter's policy from the base model on its "
    "responses, and the responses' perplexity under the frozen base model, distinct-1/2 and "
    "share in the assistant register. Writes eval.json and eval_samples.jsonl to "
    "--output-dir.")


def add_arguments(sub) -> None:
    """Add `eval` to the subparsers `sub` of the ple command; `run` parses its flags."""
    sub.add_parser("eval", add_help=False, help="measure a model or adapter on a task's test "
                   "split: reference perplexity, BLEU, reward, and guards against reward "
                   "hacking (ple eval --help: its flags)")


def parser():
    """One flag per EvalConfig field (booleans take true/false, or nothing for true, as
    every subcommand's do), and EvalCommand's."""
    from transformers import HfArgumentParser

    return HfArgumentParser([EvalConfig, EvalCommand], prog="ple eval", allow_abbrev=False,
                            formatter_class=argparse.HelpFormatter,
                            description=DESCRIPTION)


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
        cut = ", references cut to each response's length" if result["bleu_references_cut"] \
            else ""
        lines.append(f"  BLEU {result['bleu']:.2f} ({result['bleu_signature']}{cut})")
    se = result["reward_se"]
    lines.append(f"  reward {result['reward_mean']:+.3f}" + (f" ± {se:.3f}" if se is not None
                                                             else "")
                 + f" ({result['reward']})")
    for spec, value in result["extra_rewards"].items():
        lines.append(f"  reward {value['mean']:+.3f}" + (f" ± {value['se']:.3f}"
                                                          if value["se"] is not None else "")
                     + f" ({spec}, not trained on)")
    kl_se = result["kl_se"]
    lines.append(f"  KL from the base model {result['kl_mean']:.3f}"
                 + (f" ± {kl_se:.3f}" if kl_se is not None else "")
                 + " nats per response (sum over its tokens of log pi - log pi_base)")
    lines.append(f"  guards: base-model perplexity of the responses "
                 f"{result['base_perplexity']:.2f}, distinct-1 {result['distinct_1']:.3f}, "
                 f"distinct-2 {result['distinct_2']:.3f}, assistant-speak "
                 f"{100 * result['assistant_speak']:.1f} %")
    lines.append(f"Wrote {cfg['output_dir']}/eval.json and eval_samples.jsonl")
    return "\n".join(lines)


def run(argv: list[str]) -> None:
    from ple.evaluation.evaluate import evaluate

    namespace = parser().parse_args(argv)
    print(describe(evaluate(from_namespace(EvalConfig, namespace),
                            from_namespace(EvalCommand, namespace).overwrite)))
