"""Rewards R(x, y): pick one from a `--reward` spec."""

from __future__ import annotations

from ple.errors import UserError
from ple.rewards.base import RewardModel, checked_scores

__all__ = ["RewardModel", "checked_scores", "load_reward"]

# The paper's rewards for hh and tldr are models from the hub; offline only imdb has one.
OFFLINE_DEFAULTS = {"imdb": "vader"}


def load_reward(spec: str | None, task: str, label: int = 1) -> RewardModel:
    spec = spec or OFFLINE_DEFAULTS.get(task)
    if spec is None:
        raise UserError(f"config key `reward`: task {task} has no offline default reward; "
                        f"give a reward model path, a hub id or module:function")
    if spec == "vader":
        from ple.rewards.vader import VaderReward

        return VaderReward()
    if ":" in spec and not spec.startswith(("/", ".")):
        from ple.rewards.function import FunctionReward

        return FunctionReward(spec)
    from ple.rewards.builtin import RECIPES, prepared_reward_dir
    from ple.rewards.classifier import ClassifierReward

    if spec in RECIPES:
        reward = ClassifierReward(str(prepared_reward_dir(spec)), label=label)
        reward.name = spec
        return reward
    return ClassifierReward(spec, label=label)
