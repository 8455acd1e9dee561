"""The methods `ple train` knows, in one table: name -> config class, what runs it, and what
it supports. Config validation, `ple train`, `ple compare` and `import ple` read it; a new
method is its trainer (or TRL runner) and one line here.

What runs a method is either a subclass of ple.online.OnlineTrainer (ple's own loop: it
checkpoints, so a run resumes) or, for a method TRL trains in one go, a function
`(run: ple.baselines.trl_run.TRLRun, examples: list) -> summary`.

Classes and functions are named as "module:attribute" strings and imported on use (`load`),
as ple/__init__.py and cli.py name their lazy parts: ple.config validates a run against this
table before any weights load, so this module imports nothing; the trainers import torch,
and the config classes live in ple.config, which imports this module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    config: str  # "module:Class" of its config, a TrainConfig (sub)class
    runs: str  # "module:Class" of its OnlineTrainer, or "module:function" where `trl`
    # queries; sft_pairs (query, response); preference_pairs (query, chosen, rejected), or
    # queries on a task without human pairs (imdb), for which the method samples its own.
    data: str = "queries"
    trl: bool = False  # TRL trains it in one go: no checkpoints, no --resume
    vllm: bool = False  # generation_backend vllm can sample its responses
    distributed: bool = False  # runs on several processes, under DDP or DeepSpeed ZeRO
    beta: bool = False  # takes TrainConfig.beta, TRL's KL weight toward the reference

    def config_class(self) -> type:
        return load(self.config)

    def runner(self):
        return load(self.runs)


METHODS: dict[str, Method] = {
    "ple": Method("ple.config:PLEConfig", "ple.trainer:PLETrainer", vllm=True,
                  distributed=True),
    "sft": Method("ple.config:TrainConfig", "ple.baselines.sft:train_sft", data="sft_pairs",
                  trl=True),
    "dpo": Method("ple.config:TrainConfig", "ple.baselines.dpo:train_dpo",
                  data="preference_pairs", trl=True, beta=True),
    "ppo": Method("ple.config:PPOConfig", "ple.baselines.ppo:PPOTrainer", vllm=True),
    "raft": Method("ple.config:RAFTConfig", "ple.baselines.raft:RAFTTrainer", vllm=True,
                   distributed=True),
    "rloo": Method("ple.config:TrainConfig", "ple.baselines.rloo:train_rloo", trl=True,
                   beta=True),
}


def load(path: str):
    """The attribute a "module:attribute" string names, importing its module."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def configured_by(cls: type) -> list[str]:
    """The methods whose settings config class `cls` holds."""
    return [name for name, m in METHODS.items() if m.config_class() is cls]


def having(feature: str) -> str:
    """The methods with `feature` (a Method flag) as prose, for messages: "ple and raft"."""
    names = [name for name, m in METHODS.items() if getattr(m, feature)]
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
