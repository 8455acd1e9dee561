"""ple: Progressively Label Enhancement (PLE) for language-model alignment.

    from ple import PLETrainer, PLEConfig
    trainer = PLETrainer(model="default", args=PLEConfig(output_dir="runs/x"),
                         train_dataset=dataset, reward_funcs=[my_reward])
    trainer.train()

The trainers are imported on first use, so `import ple` stays light.
"""

from ple.config import PLEConfig, PPOConfig, RAFTConfig, TrainConfig
from ple.errors import UserError

__all__ = ["PLEConfig", "PLETrainer", "PPOConfig", "PPOTrainer", "RAFTConfig", "RAFTTrainer",
           "TrainConfig", "UserError", "paper_lora"]


def _version() -> str:
    """pyproject.toml's version, the one place it is written: from the installed package's
    metadata, or, run from a source tree that was never installed, from the file itself."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ple")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as f:
            return tomllib.load(f)["project"]["version"]


__version__ = _version()

_LAZY = {"PLETrainer": "ple.trainer", "RAFTTrainer": "ple.baselines.raft",
         "PPOTrainer": "ple.baselines.ppo", "paper_lora": "ple.models"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ple' has no attribute {name!r}")
