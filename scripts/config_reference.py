"""Write docs/config-reference.md from the config dataclasses' field docs.

    python scripts/config_reference.py                 # rewrite docs/config-reference.md
    python scripts/config_reference.py --out FILE      # write it elsewhere (the test does)

The field docs are the one place a setting is described: `ple train --help`, `ple eval
--help` and `ple reward train --help` print them too. So the reference is generated from
them, never edited by hand, and tests/test_config_reference.py fails when it is stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "config-reference.md"
COMMAND = "python scripts/config_reference.py"


@dataclasses.dataclass
class Section:
    title: str
    cls: type
    intro: str
    flags: str | dict  # "dash": --field-name; a dict: field -> its flag; "": YAML keys only
    skip: tuple[str, ...] = ()  # fields listed in another section already
    defaults: dict = dataclasses.field(default_factory=dict)  # shown where the class has none


def sections() -> list[Section]:
    from ple.compare.config import CompareConfig, FrontierSpec, JudgeSpec
    from ple.config import PLEConfig, PPOConfig, RAFTConfig, TrainConfig
    from ple.data_prepare import DataPrepareConfig
    from ple.evaluation.evaluate import FLAGS as EVAL_FLAGS
    from ple.evaluation.evaluate import EvalConfig
    from ple.rewards.training.config import RewardTrainConfig

    from transformers import TrainingArguments

    shared = tuple(f.name for f in dataclasses.fields(TrainConfig))
    # TrainingArguments' fields that ple leaves as they are: documented by transformers.
    inherited = tuple(f.name for f in dataclasses.fields(TrainingArguments)
                      if f.name not in TrainConfig.__annotations__)
    return [
        Section("`ple train`: settings of every method", TrainConfig,
                "`TrainConfig`: what every method shares. It configures `sft`, `dpo` and "
                "`rloo` (trained through TRL), which have no settings of their own. It is a "
                "`transformers.TrainingArguments`, as TRL's configs are: every field of "
                "[TrainingArguments](https://huggingface.co/docs/transformers/main_classes/"
                "trainer#transformers.TrainingArguments) works and means what it means "
                "there (`lr_scheduler_type`, `warmup_steps`, `logging_steps`, "
                "`save_total_limit`, `load_best_model_at_end`, `push_to_hub`, ...). Listed "
                "here: ple's own fields, and TrainingArguments' whose default ple changes.",
                "dash", skip=inherited,
                # TrainConfig leaves `method` to its subclasses; `ple train` without
                # --method picks PLEConfig, whose default is ple.
                defaults={"method": "ple"}),
        Section("`ple train --method ple`", PLEConfig,
                "`PLEConfig`: PLE's own settings (Algorithm 1, Eqs. 3-7), on top of the "
                "shared ones. [ple_trainer.md](ple_trainer.md) explains them.", "dash",
                skip=shared),
        Section("`ple train --method raft`", RAFTConfig,
                "`RAFTConfig`: RAFT's own settings. [raft_trainer.md](raft_trainer.md).",
                "dash", skip=shared),
        Section("`ple train --method ppo`", PPOConfig,
                "`PPOConfig`: PPO's own settings. [ppo_trainer.md](ppo_trainer.md).",
                "dash", skip=shared),
        Section("`ple eval`", EvalConfig,
                "`EvalConfig` (in `ple.evaluation.evaluate`): one evaluation of a model or "
                "an adapter on a task's test split. Also the `eval:` section of a compare "
                "config.", EVAL_FLAGS),
        Section("`ple reward train`", RewardTrainConfig,
                "`RewardTrainConfig` (in `ple.rewards.training.config`): train, measure and save a "
                "reward model ([reward-models.md](reward-models.md)).", "dash"),
        Section("`ple compare`: the compare config", CompareConfig,
                "`CompareConfig` (in `ple.compare.config`): the YAML file `ple compare "
                "--config` reads ([methods.md](methods.md#comparing-methods-ple-compare)). "
                "These are YAML keys, not flags.", ""),
        Section("`ple compare`: its `winrate:` section", JudgeSpec,
                "`JudgeSpec`: the judge of the win rates, with `ple winrate`'s flag names.",
                ""),
        Section("`ple compare`: its `frontier:` section", FrontierSpec,
                "`FrontierSpec`: the reward-KL frontier report, frontier.md beside "
                "report.md (`ple.compare.frontier`).", ""),
        Section("`ple data prepare`", DataPrepareConfig,
                "`DataPrepareConfig` (in `ple.data_prepare`): build the data folder from "
                "the public datasets ([data.md](data.md)).", "dash"),
    ]


def type_name(hint) -> str:
    """`str | None`, `list[float]`, `JudgeSpec | None`: without module paths."""
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " | ".join(type_name(a) for a in typing.get_args(hint))
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", str(hint))


def default_text(f: dataclasses.Field, section: Section) -> str:
    if f.name in section.defaults:
        return f"`{section.defaults[f.name]}`"
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == {} or value == [] or value == "":
        return "empty"
    return f"`{value}`"


def flag_text(f: dataclasses.Field, section: Section) -> str:
    if section.flags == "dash":
        return f"`--{f.name.replace('_', '-')}`"
    if isinstance(section.flags, dict):
        return f"`{section.flags[f.name]}`"
    return ""


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every setting of every command, generated from the config dataclasses' field docs "
        f"by `{COMMAND}` (do not edit by hand; a test fails when this file is stale). "
        "The same text is what `ple train --help`, `ple train --method NAME --help`, "
        "`ple eval --help`, `ple reward train --help` and `ple data prepare --help` print.",
        "",
        "`ple train` and `ple eval` settings are YAML keys of `--config` and flags alike; "
        "flags win over the YAML. Booleans read `--use-lora false`, `--use-lora` or "
        "`--no-use-lora`; a list reads `--purity-margins 0.05 0.2`. From Python, each is "
        "a keyword argument of its config class (`PLEConfig(tau0=1.0)`).",
        "",
        "Contents:",
        "",
    ]
    all_sections = sections()
    for s in all_sections:
        anchor = re.sub(r"[^a-z0-9 -]", "", s.title.lower()).replace(" ", "-")
        lines.append(f"- [{s.title.replace('`', '')}](#{anchor})")
    hints_cache = {}
    for s in all_sections:
        hints = hints_cache.setdefault(s.cls, typing.get_type_hints(s.cls))
        lines += ["", f"## {s.title}", "", s.intro, ""]
        for f in dataclasses.fields(s.cls):
            if f.name in s.skip or not f.init or "help" not in f.metadata:
                continue
            flag = flag_text(f, s)
            about = ", ".join(x for x in (flag, type_name(hints[f.name]),
                                          f"default {default_text(f, s)}") if x)
            doc = " ".join(f.metadata["help"].split())
            lines.append(f"- **`{f.name}`** ({about}): {doc}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    Path(args.out).write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
