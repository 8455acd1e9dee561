"""`ple reward train`'s command line: one flag per RewardTrainConfig field, and the line
printed at the end. ple.cli wires it in; this module imports nothing heavy, so `ple --help`
stays fast."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path

from ple.rewards.training.config import RewardTrainConfig


def true_or_false(text: str) -> bool:
    """The value of a boolean flag: `true` or `false`, in any case."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


def _flag_type(f):
    base = f.type.split(" | ")[0]
    optional = "None" in f.type

    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        if base == "bool":
            return true_or_false(text)
        try:
            return {"int": int, "float": float, "str": str}[base](text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {base}, got {text!r}") from None
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per RewardTrainConfig field, its help the field's (`--overwrite` is a
    switch)."""
    for f in fields(RewardTrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "overwrite":
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
            continue
        required = f.default is MISSING
        parser.add_argument(flag, dest=f.name, type=_flag_type(f), required=required,
                            choices=f.metadata.get("choices"),
                            default=None if required else f.default, help=f.metadata["help"])


def config_from_args(args: argparse.Namespace) -> RewardTrainConfig:
    """The config the parsed flags give."""
    return RewardTrainConfig(**{f.name: getattr(args, f.name) for f in fields(RewardTrainConfig)})


def describe(result: dict) -> str:
    """The line printed at the end of `ple reward train`, from what reward_eval.json holds."""
    name = result["metric"].replace("_", " ")
    return (f"held-out {name}: {result[result['metric']]:.3f} on {result['n_eval']} "
            f"{'pairs' if result['kind'] == 'preference' else 'examples'} (trained on "
            f"{result['n_train']}, {result['steps']} steps, {result['train_seconds']:.0f} s; "
            f"texts cut at {result['max_length']} tokens: {result['train_texts_truncated']} "
            f"in training, {result['eval_texts_truncated']} held out"
            + (f"; invalid pairs dropped: {result['invalid_pairs_dropped']}"
               if result.get("invalid_pairs_dropped") else "") + ")"
            + "".join(f"; {Path(source).parent.name or source}: {v['accuracy']:.3f} on {v['n']}"
                      for source, v in result.get("per_source", {}).items()))
