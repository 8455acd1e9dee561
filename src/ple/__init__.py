"""ple: Progressively Label Enhancement (PLE) for language-model alignment.

    from ple import PLETrainer, PLEConfig
    trainer = PLETrainer(model="default", args=PLEConfig(output_dir="runs/x"),
                         train_dataset=dataset, reward_funcs=[my_reward])
    trainer.train()

The trainers are imported on first use, so `import ple` stays light.
"""

from ple.config import PLEConfig, PPOConfig, RAFTConfig, TrainConfig
from ple.errors import UserError
from ple import methods

# Imported on first use: the trainer of every method ple's own loop runs (the methods
# table's; TRL's methods are run by functions, not public), and the paper's LoRA.
_LAZY = {path.partition(":")[2]: path for path in
         [m.runs for m in methods.METHODS.values() if not m.trl] + ["ple.models:paper_lora"]}

__all__ = sorted(["PLEConfig", "PPOConfig", "RAFTConfig", "TrainConfig", "UserError", *_LAZY])


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


def __getattr__(name: str):
    if name in _LAZY:
        return methods.load(_LAZY[name])
    raise AttributeError(f"module 'ple' has no attribute {name!r}")
