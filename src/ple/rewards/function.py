"""Python functions as rewards, called the way TRL calls reward functions, so that those
work unchanged: `module:function` on the command line, or callables from Python; and a
weighted sum of several rewards (TRL's `reward_funcs` with `reward_weights`)."""

from __future__ import annotations

import importlib
import inspect

from ple.errors import UserError
from ple.rewards.base import RewardModel, checked_scores


def import_function(spec: str):
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"reward `{spec}`: cannot import module {module_name} ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"reward `{spec}`: module {module_name} has no function {attr}")
    return fn


def callable_name(fn) -> str:
    """`module:qualname` when the function can be imported again by that name (what
    config.yaml records), else its plain name."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        return f"{module}:{qualname}"
    return getattr(fn, "__name__", type(fn).__name__)


class FunctionReward:
    """`fn(prompts=..., completions=..., completion_ids=..., **columns)` -> one number per
    completion, as TRL's GRPOTrainer calls reward functions. For a query that came from a
    conversation, its prompt is the list of messages and its completion
    `[{"role": "assistant", "content": text}]`; otherwise both are text. `columns` are the
    dataset's other columns (ple.inputs.QueryInfo), one list per column. Only the arguments
    the function names are passed, unless it takes **kwargs: `def f(prompts, completions)`
    works too."""

    wants_ids = True

    def __init__(self, fn, name: str | None = None, info: dict | None = None):
        if isinstance(fn, str):
            fn, name = import_function(fn), fn
        self._fn, self.info = fn, info or {}
        self.name = name or callable_name(fn)
        params = inspect.signature(fn).parameters.values()
        self._takes_all = any(p.kind is p.VAR_KEYWORD for p in params)
        self._names = {p.name for p in params}

    def score(self, queries: list[str], responses: list[str],
              completion_ids: list[list[int]] | None = None) -> list[float]:
        infos = [self.info.get(q) for q in queries]
        chat = [i is not None and i.messages is not None for i in infos]
        given = {"prompts": [list(i.messages) if c else q for q, i, c in zip(queries, infos, chat)],
                 "completions": [[{"role": "assistant", "content": r}] if c else r
                                 for r, c in zip(responses, chat)]}
        if completion_ids is not None:
            given["completion_ids"] = completion_ids
        for column in {k for i in infos if i is not None for k in i.columns}:
            given[column] = [i.columns.get(column) if i else None for i in infos]
        if not self._takes_all:
            given = {k: v for k, v in given.items() if k in self._names}
        return list(self._fn(**given))


class WeightedReward:
    """sum_i weight_i * R_i(x, y): several rewards as one (TRL's reward_weights)."""

    wants_ids = True

    def __init__(self, rewards: list[RewardModel], weights: list[float]):
        if len(weights) != len(rewards):
            raise UserError(f"reward_weights: {len(weights)} weights for {len(rewards)} "
                            f"rewards")
        self.rewards, self.weights = rewards, [float(w) for w in weights]
        self.name = " + ".join(f"{w:g}*{r.name}" for r, w in zip(rewards, self.weights))

    def score(self, queries: list[str], responses: list[str],
              completion_ids: list[list[int]] | None = None) -> list[float]:
        total = [0.0] * len(responses)
        for reward, weight in zip(self.rewards, self.weights):
            scores = checked_scores(reward, queries, responses, completion_ids)
            total = [t + weight * s for t, s in zip(total, scores)]
        return total

    def to(self, device) -> "WeightedReward":
        for reward in self.rewards:
            if hasattr(reward, "to"):
                reward.to(device)
        return self

    @property
    def truncated(self) -> int | None:
        counts = [r.truncated for r in self.rewards if hasattr(r, "truncated")]
        return sum(counts) if counts else None
