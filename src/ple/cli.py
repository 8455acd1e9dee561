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

from dataclasses import dataclass, field
from pathlib import Path

import ple
from ple.config import TrainConfig, check_method_keys, from_namespace, load_config, read_yaml
from ple.errors import UserError
from ple.methods import METHODS, configured_by
from ple.tasks import TASKS, builtin_queries
from ple.training import run_training

# Subcommands that live in their own module, each with add_arguments(subparsers) and run(args).
COMMAND_MODULES = {"annotate": "ple.annotate.command", "eval": "ple.evaluation.command",
                   "winrate": "ple.evaluation.winrate", "compare": "ple.compare.orchestrate",
                   "data": "ple.data_prepare"}

# The demo's settings, chosen by the measurements in README ("The demo"). Two deviations from
# the paper, both measured there: replay of the current step only (a full replay costs
# quadratically many updates), and an SFT anchor on the better response (as RRHF has).
DEMO = {"task": "imdb", "model": "default", "reward": "vader", "max_steps": 30,
        "batch_size": 8, "learning_rate": 3e-4, "replay_window": 1, "sft_anchor": 1.0,
        "max_new_tokens": 32, "eval_queries": 128, "output_dir": "runs/demo"}
DEMO_EXAMPLES = 3  # held-out openings printed before and after



@dataclass
class TrainCommand:
    """The flags of `ple train` that are not settings of the run."""

    config: str | None = field(default=None, metadata={
        "help": "YAML file of config fields; flags win over it."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace the outputs of an earlier run in --output-dir."})
    resume: bool = field(default=False, metadata={
        "help": "Continue the run in --output-dir from its newest checkpoint, with the config "
                "it saved; flags may only repeat it (or extend --max-steps)."})


class _ProseHelp(argparse.HelpFormatter):
    """Field docs are prose ("81 % of the gradient"), not %-format strings: print them as
    written instead of letting argparse %-expand them (which fails on such a doc)."""

    def _expand_help(self, action: argparse.Action) -> str:
        return self._get_help_string(action)


def train_parser(cls: type[TrainConfig]) -> argparse.ArgumentParser:
    """`ple train`'s flags: one per field of the method's config class, and TrainCommand's.
    Booleans take true/false (or nothing, for true) as every subcommand's do."""
    from transformers import HfArgumentParser

    class OneLineErrors(HfArgumentParser):
        # A config is a TrainingArguments: its usage is over a hundred flags, which would
        # bury the one line that says what is wrong.
        def error(self, message):
            self.exit(2, f"ple train: error: {message} (ple train --help lists the settings)\n")

    methods = configured_by(cls)
    others = ", ".join(m for m in METHODS if m not in methods)
    return OneLineErrors(
        [cls, TrainCommand], prog="ple train", allow_abbrev=False, formatter_class=_ProseHelp,
        description=f"Train a policy: {cls.__name__} ({', '.join(methods)}). Every "
        f"field is a flag and a YAML key; flags win over --config.",
        epilog=f"The other methods' settings: ple train --method NAME --help ({others}).")


def parse_train(argv: list[str]) -> tuple[TrainConfig, TrainCommand]:
    """The run's config (YAML or, with --resume, the saved config.yaml, then flags) and the
    command's own flags. The method, from the flags or the YAML, picks the config class."""
    from transformers.hf_argparser import string_to_bool

    first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--config", "--method", "--output-dir", "--output_dir"):
        first.add_argument(flag)
    first.add_argument("--resume", nargs="?", const=True, default=False, type=string_to_bool)
    known = first.parse_known_args(argv)[0]
    path = known.config
    if known.resume:
        if path:
            raise UserError("--resume continues with the config the run saved; give no "
                            "--config")
        out = known.output_dir or "runs/ple"
        path = str(Path(out) / "config.yaml")
        if not Path(path).is_file():
            raise UserError(f"--resume: {path} does not exist (no run to continue)")
    values, lines = read_yaml(path) if path else ({}, {})
    if known.method:
        values["method"] = known.method
    cls = check_method_keys(values, lines)
    parser = train_parser(cls)
    parser.set_defaults(**values)
    namespace = parser.parse_args(argv)
    return from_namespace(cls, namespace), from_namespace(TrainCommand, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ple", description="Align a language model with "
                                     "PLE (Progressively Label Enhancement).")
    parser.add_argument("--version", action="version", version=f"ple {ple.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # Their flags are generated from config dataclasses (parse_train, ple.evaluation.command).
    sub.add_parser("train", help="train a policy (ple train --help: its flags)",
                   add_help=False)

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

    from ple.rewards.training.command import add_arguments as add_reward_train_arguments

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
    from ple.rewards.training.command import config_from_args, describe
    from ple.rewards.training.run import train_reward_model

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


def log_to_stderr() -> None:
    """ple's library code logs; the command shows its INFO lines as `ple: ...` on stderr."""
    logger = logging.getLogger("ple")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("ple: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # train and eval parse their own flags (generated from their config dataclasses).
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("train", "eval"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    quiet_third_parties()
    log_to_stderr()
    try:
        if args.command == "train":
            cfg, command = parse_train(rest)
            run_training(cfg, command.overwrite, command.resume)
        elif args.command == "eval":
            importlib.import_module("ple.evaluation.command").run(rest)
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
