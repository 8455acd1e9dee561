"""Any Python function as the reward, named `module:function` (TRL's reward-function shape)."""

from __future__ import annotations

import importlib

from ple.errors import UserError


class FunctionReward:
    """Calls `function(prompts=queries, completions=responses)` -> list of floats, the same
    signature as TRL's reward functions, so those work unchanged."""

    def __init__(self, spec: str):
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UserError(f"reward `{spec}`: cannot import module {module_name} ({e})") from None
        self._fn = getattr(module, attr, None)
        if not callable(self._fn):
            raise UserError(f"reward `{spec}`: module {module_name} has no function {attr}")
        self.name = spec

    def score(self, queries: list[str], responses: list[str]) -> list[float]:
        return list(self._fn(prompts=queries, completions=responses))
