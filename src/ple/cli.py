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
import shutil
import sys
import warnings
from pathlib import Path

from ple.config import FIELDS, PLEConfig, field_type, load_config, true_or_false
from ple.errors import UserError
from ple.paths import check_writable_dir
from ple.tasks import (TASKS, builtin_queries, load_preference_pairs, load_queries,
                       load_sft_pairs)

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

log = logging.getLogger(__name__)


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


def prepare_output_dir(path: str, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory; with --overwrite, clear the old one."""
    from ple.online import RUN_FILES

    out = Path(path)
    check_writable_dir(out, "--output-dir")
    old = [out / name for name in (*RUN_FILES, "adapter", "model") if (out / name).exists()]
    if old and not overwrite:
        raise UserError(f"--output-dir {path} holds another run ({old[0].name}); pass "
                        f"--overwrite to replace it or choose another directory")
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def resume_config(overrides: dict) -> PLEConfig:
    """The saved config of the run in --output-dir; flags may only repeat it (or extend
    max_steps): a resumed run that trained differently would not be the same run."""
    if "output_dir" not in overrides:
        raise UserError("--resume needs --output-dir (the run to continue)")
    saved_path = Path(overrides["output_dir"]) / "config.yaml"
    if not saved_path.is_file():
        raise UserError(f"--resume: {saved_path} does not exist (no run to continue)")
    saved = load_config(str(saved_path))
    cfg = load_config(str(saved_path), overrides)
    changed = [k for k in FIELDS if k != "max_steps" and getattr(cfg, k) != getattr(saved, k)]
    if changed:
        raise UserError(f"--resume: the config differs from the saved run in "
                        f"{', '.join(changed)}")
    return cfg


def method_data(cfg: PLEConfig, task):
    """What the method trains from: supervised pairs (sft), human preference pairs (dpo on
    hh and tldr), or queries (every online method, and dpo on imdb, which samples its pairs)."""
    if cfg.method == "sft":
        if cfg.data is None:
            raise UserError("config key `data`: method sft needs supervised data (hh: `chosen`; "
                            "imdb: `text` and `label`; tldr: `prompt` and `summary`)")
        return load_sft_pairs(task, cfg.data)
    if cfg.method == "dpo" and cfg.task != "imdb":
        if cfg.data is None:
            raise UserError(f"config key `data`: method dpo needs preference pairs for task "
                            f"{cfg.task} (`chosen` and `rejected`)")
        return load_preference_pairs(task, cfg.data)
    return load_queries(task, cfg.data)


def check_processes(cfg: PLEConfig) -> None:
    """Under `accelerate launch --num_processes N` (torch.distributed's WORLD_SIZE = N), only
    the methods of the shared online harness run on several processes (docs/scaling.md)."""
    from ple.zero import launched_with_deepspeed

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1 and cfg.method not in ("ple", "raft"):
        raise UserError(f"config key `method` = {cfg.method!r}: runs on one process, not "
                        f"{processes}; ple and raft run on several (docs/scaling.md)")
    if launched_with_deepspeed() and cfg.method not in ("ple", "raft"):
        raise UserError(f"config key `method` = {cfg.method!r}: runs without DeepSpeed; ple "
                        f"and raft run under it (docs/scaling.md)")
    if cfg.batch_size < processes:
        raise UserError(f"config key `batch_size` = {cfg.batch_size}: each of the {processes} "
                        f"processes needs at least one query a step")


def run_training(cfg: PLEConfig, overwrite: bool = False, resume: bool = False) -> dict:
    """Check every input, then load the models and train. Returns the run summary."""
    check_processes(cfg)
    task = TASKS[cfg.task]
    examples = method_data(cfg, task)
    queries = [e[0] if isinstance(e, tuple) else e for e in examples]
    sft_pairs = load_sft_pairs(task, cfg.sft_data) if cfg.sft_data else None
    eval_queries = builtin_queries(cfg.task, "heldout")[:cfg.eval_queries] \
        if cfg.eval_queries else []
    cfg.principle_text  # noqa: B018 - reads principle_file now, so a bad path fails early
    offline = cfg.method in ("sft", "dpo")
    in_trl = cfg.method in ("sft", "dpo", "rloo")
    if in_trl and resume:
        raise UserError(f"--resume: method {cfg.method} is trained by TRL in one go; start it "
                        f"again with --overwrite")
    from ple.models import context_length, load_policy, load_tokenizer
    from ple.online import check_context, length_filter, make_prompter
    from ple.rewards import load_reward

    # Prompts too long for the model are the user's mistake: say so before loading weights,
    # which needs only the tokenizer and the config.
    prompter = make_prompter(cfg, load_tokenizer(cfg.model))
    kept, dropped = length_filter(prompter, queries, cfg.max_prompt_tokens,
                                  f"data {cfg.data or '(built-in)'}")
    if not in_trl:
        check_context(prompter, kept, cfg.max_new_tokens, context_length(cfg.model))
    # SFT and DPO on human pairs use the reward for evaluation only.
    needs_reward = not offline or cfg.eval_queries or cfg.method == "dpo" and cfg.task == "imdb"
    reward = load_reward(cfg.reward, cfg.task, cfg.reward_label) if needs_reward else None
    if not resume and os.environ.get("RANK", "0") == "0":  # the process that writes
        prepare_output_dir(cfg.output_dir, overwrite)
    model, tokenizer = load_policy(cfg.model, cfg.seed)
    if in_trl:
        from ple.baselines.dpo import train_dpo
        from ple.baselines.rloo import train_rloo
        from ple.baselines.trl_run import TRLRun
        from ple.baselines.sft import train_sft

        if dropped:
            log.warning("dropped %d of %d examples whose prompt is longer than "
                        "max_prompt_tokens = %d", dropped, len(queries), cfg.max_prompt_tokens)
        kept_set = set(kept)
        examples = [e for e in examples if (e[0] if isinstance(e, tuple) else e) in kept_set]
        run = TRLRun(cfg, model, tokenizer, reward, eval_queries)
        if cfg.method == "rloo":
            return train_rloo(run, examples)
        if cfg.method == "sft":
            return train_sft(run, examples)
        if cfg.task == "imdb":
            return train_dpo(run, queries=examples)
        return train_dpo(run, pairs=examples)
    from ple.baselines.ppo import PPOTrainer
    from ple.baselines.raft import RAFTTrainer
    from ple.trainer import PLETrainer

    trainer_class = {"ple": PLETrainer, "raft": RAFTTrainer, "ppo": PPOTrainer}[cfg.method]
    trainer = trainer_class(cfg, model, tokenizer, reward, queries, eval_queries, sft_pairs)
    return trainer.train(resume=resume)


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
