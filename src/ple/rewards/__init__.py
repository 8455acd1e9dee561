"""Rewards R(x, y): pick one from a `--reward` spec, or from what a trainer was given."""

from __future__ import annotations

from ple.errors import UserError
from ple.rewards.base import RewardModel, checked_scores

__all__ = ["RewardModel", "checked_scores", "load_reward", "resolve_rewards",
           "reward_model_id"]

# Offline defaults: VADER for imdb; for hh a preference model ple trains on first use
# (ple.rewards.builtin). The paper's tldr reward is a model from the hub.
OFFLINE_DEFAULTS = {"imdb": "vader", "hh": "hh-preference"}


def load_reward(spec: str | None, task: str, label: int = 1, info: dict | None = None
                ) -> RewardModel:
    """The reward a spec names; `info` (ple.inputs) gives reward functions the dataset's
    columns."""
    spec = spec or OFFLINE_DEFAULTS.get(task)
    if spec is None:
        raise UserError(f"config key `reward`: task {task} has no offline default reward; "
                        f"give a reward model path, a hub id or module:function")
    if spec == "vader":
        from ple.rewards.vader import VaderReward

        return VaderReward()
    if ":" in spec and not spec.startswith(("/", ".")):
        from ple.rewards.function import FunctionReward

        return FunctionReward(spec, info=info)
    from ple.rewards.builtin import RECIPES, prepared_reward_dir
    from ple.rewards.classifier import ClassifierReward

    if spec in RECIPES:
        prepared = prepared_reward_dir(spec)
        reward = ClassifierReward(str(prepared), label=label)
        reward.name = spec
        reward.model_id = prepared.name
        return reward
    return ClassifierReward(spec, label=label)


def reward_model_id(reward: RewardModel | None) -> str | None:
    """Which trained model a built-in reward is (`imdb-sentiment-3ebc0373d6d8`: its name and
    cache key), recorded in summary.json and eval.json so that the runs of a study that spans
    machines can be checked to share one; None for any other reward."""
    return getattr(reward, "model_id", None)


def resolve_rewards(reward_funcs, reward_weights, spec: str | None, task: str, label: int,
                    info: dict) -> RewardModel:
    """One reward from a trainer's `reward_funcs` (a spec, a TRL-style function, a reward
    object, or a list of them) and `reward_weights`; without reward_funcs, the reward `spec`
    names (or the task's default). Its `name` is what config.yaml records."""
    from ple.rewards.function import FunctionReward, WeightedReward

    if reward_funcs is None:
        return load_reward(spec, task, label, info)
    items = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    if not items:
        raise UserError("reward_funcs: an empty list")
    rewards = []
    for item in items:
        if isinstance(item, str):
            rewards.append(load_reward(item, task, label, info))
        elif hasattr(item, "score"):
            rewards.append(item)
        elif callable(item):
            rewards.append(FunctionReward(item, info=info))
        else:
            raise UserError(f"reward_funcs: {item!r} is not a reward spec, a function or a "
                            f"reward object")
    if len(rewards) == 1 and reward_weights is None:
        return rewards[0]
    return WeightedReward(rewards, reward_weights or [1.0] * len(rewards))
