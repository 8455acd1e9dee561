"""The `ple` command: train, demo, generate, eval.

Every config field is also a flag (`--max-steps`, `--tau0`, ...); flags win over the YAML.
Mistakes in what the user gave end in one line on stderr and exit code 2, before any model
loads and before anything is written.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from ple.config import FIELDS, field_type, load_config, true_or_false
from ple.errors import UserError
from ple.tasks import TASKS, builtin_queries
from ple.training import resume_config, run_training

# Subcommands that live in their own module, each with add_arguments(subparsers) and run(args).
COMMAND_MODULES = {"annotate": "ple.annotate.command", "eval": "ple.evaluation.command",
                   "winrate": "ple.evaluation.winrate", "compare": "ple.compare.orchestrate"}

# The demo's settings, chosen by the measurements in README ("The demo"). Two deviations from
# the paper, both measured there: replay of the current step only (a full replay costs
# quadratically many updates), and an SFT anchor on the better response (as RRHF has).
DEMO = {"task": "imdb", "model": "default", "reward": "vader", "max_steps": 30,
        "batch_size": 8, "learning_rate": 3e-4, "replay_window": 1, "sft_anchor": 1.0,
        "eval_queries": 32, "output_dir": "runs/demo"}
DEMO_EXAMPLES = 3  # held-out openings printed before and after



def _parse_value(name: str):
    base, optional = field_type(name)

    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        if base == list[float]:
            try:
                return [float(v) for v in text.split(",")]
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got "
                                                 f"{text!r}") from None
        if base is bool:
            return true_or_false(text)
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {base.__name__}, got {text!r}") \
                from None
    return parse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for name, f in FIELDS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=_parse_value(name),
                            default=argparse.SUPPRESS, help=f.metadata["help"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ple", description="Align a language model with "
                                     "PLE (Progressively Label Enhancement).")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a policy")
    train.add_argument("--config", help="YAML file of config fields")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the outputs of an earlier run in --output-dir")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --output-dir from its newest checkpoint")
    _add_config_flags(train)

    demo = sub.add_parser("demo", help="the offline demo: SmolLM2-135M-Instruct, imdb, VADER")
    demo.add_argument("--output-dir", default=DEMO["output_dir"])
    demo.add_argument("--max-steps", type=int, default=DEMO["max_steps"])

    gen = sub.add_parser("generate", help="responses of the base model and of a trained "
                         "adapter, side by side")
    gen.add_argument("--model", default="default")
    gen.add_argument("--adapter", help="a PEFT adapter directory (e.g. RUN/adapter)")
    gen.add_argument("--task", choices=sorted(TASKS), default="imdb")
    gen.add_argument("--query", action="append", help="a query (repeatable); default: the "
                     "task's held-out built-in queries")
    gen.add_argument("-n", type=int, default=4, help="how many built-in queries (default 4)")
    gen.add_argument("--max-new-tokens", type=int, default=48)
    gen.add_argument("--seed", type=int, default=0)

    from ple.rewards.train import add_arguments as add_reward_train_arguments

    reward = sub.add_parser("reward", help="reward models: `ple reward train`")
    reward_sub = reward.add_subparsers(dest="reward_command", required=True)
    add_reward_train_arguments(reward_sub.add_parser(
        "train", help="train a reward model (classifier or preference) from labelled or "
        "paired data, evaluate it on held-out data, and save it as a --reward directory"))

    for module in COMMAND_MODULES.values():
        importlib.import_module(module).add_arguments(sub)
    return parser


def _describe(label: str, ev: dict) -> str:
    return (f"{label}: reward {ev['reward_mean']:+.3f} ± {ev['reward_se']:.3f} (n={ev['n']}), "
            f"base-model perplexity {ev['base_perplexity']:.1f}, "
            f"distinct-2 {ev['distinct_2']:.3f}")


def cmd_demo(args) -> None:
    from ple.evaluation.metrics import mean_and_se

    cfg = load_config(None, {**DEMO, "output_dir": args.output_dir,
                             "max_steps": args.max_steps})
    summary = run_training(cfg, overwrite=True)
    before, after = summary["eval_before"], summary["eval_after"]
    rise, rise_se = mean_and_se([b["reward"] - a["reward"] for a, b in
                                 zip(before["samples"], after["samples"])])
    print("\nPlain responses (no principle) to the held-out built-in review openings:")
    print(_describe("  before training", before))
    print(_describe("  after training ", after))
    print(f"  rise {rise:+.3f} ± {rise_se:.3f} (paired standard error, same openings)")
    print(f"Outputs: {cfg.output_dir}/ (metrics.jsonl, samples.jsonl, adapter/); "
          f"plot: {cfg.output_dir}/reward_curves.png")
    print("\nThe same held-out openings, before and after training (one sample each):")
    for a, b in list(zip(before["samples"], after["samples"]))[:DEMO_EXAMPLES]:
        print(f"\n  opening: {a['query']}")
        print(f"  before ({a['reward']:+.2f}): {' '.join(a['response'].split())[:160]}")
        print(f"  after  ({b['reward']:+.2f}): {' '.join(b['response'].split())[:160]}")


def cmd_generate(args) -> None:
    import torch

    from ple.models import check_adapter_dir, load_adapter, load_policy
    from ple.rollout import Prompter, decode, sample

    task = TASKS[args.task]
    queries = args.query or builtin_queries(args.task, "heldout")[:args.n]
    if args.adapter:
        check_adapter_dir(args.adapter)
    model, tokenizer = load_policy(args.model, args.seed)
    prompter = Prompter(tokenizer, task, task.principle, tokenizer.chat_template is not None)
    prompts = [prompter.ids(q) for q in queries]

    def responses(m):
        torch.manual_seed(args.seed)
        return decode(tokenizer, sample(m, tokenizer, prompts, args.max_new_tokens, 1.0, 1.0, 0))

    base = responses(model)
    tuned = None
    if args.adapter:
        tuned = responses(load_adapter(model, args.adapter, args.model))
    for i, query in enumerate(queries):
        print(f"### query\n{query.strip()}\n--- base\n{base[i].strip()}")
        if tuned:
            print(f"--- adapter\n{tuned[i].strip()}")
        print()


def cmd_reward_train(args) -> None:
    from ple.rewards.train import config_from_args, describe, train_reward_model

    cfg = config_from_args(args)
    result = train_reward_model(cfg)
    print(describe(result))
    print(f"Saved to {cfg.output_dir}/ (reward_eval.json); use it as --reward {cfg.output_dir}")


def quiet_third_parties() -> None:
    """A user of the command sees ple's own lines and progress bars, and warnings about
    their run, not the libraries' chatter. (The library itself changes no global state.)"""
    # peft and TRL call transformers' gradient_checkpointing* names, which transformers 5
    # deprecates for activation_checkpointing*.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing", category=FutureWarning)
    # transformers and datasets draw a bar per weight file, tensor and map() call.
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # Libraries that import DeepSpeed when it is installed make it guess the accelerator
    # and warn that it guessed the CPU; naming it stops the guess (CUDA is still found).
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a line is logged, not when the handler was made
    (a caller may redirect it, as the tests do for each command)."""

    stream = property(lambda self: sys.stderr, lambda self, value: None)


def _log_to_stderr() -> None:
    """ple's library code logs; the command shows its INFO lines as `ple: ...` on stderr."""
    logger = logging.getLogger("ple")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("ple: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_third_parties()
    _log_to_stderr()
    try:
        if args.command == "train":
            overrides = {k: v for k, v in vars(args).items() if k in FIELDS}
            if args.resume:
                run_training(resume_config(overrides), resume=True)
            else:
                run_training(load_config(args.config, overrides), args.overwrite)
        elif args.command == "demo":
            cmd_demo(args)
        elif args.command == "reward":
            cmd_reward_train(args)
        elif args.command in COMMAND_MODULES:
            importlib.import_module(COMMAND_MODULES[args.command]).run(args)
        else:
            cmd_generate(args)
    except UserError as e:
        print(f"ple: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
