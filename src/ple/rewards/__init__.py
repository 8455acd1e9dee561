"""Rewards R(x, y): pick one from a `--reward` spec."""

from __future__ import annotations

from ple.errors import UserError
from ple.rewards.base import RewardModel, checked_scores

__all__ = ["RewardModel", "checked_scores", "load_reward"]

# Offline defaults: VADER for imdb; for hh a preference model ple trains on first use
# (ple.rewards.builtin). The paper's tldr reward is a model from the hub.
OFFLINE_DEFAULTS = {"imdb": "vader", "hh": "hh-preference"}


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
