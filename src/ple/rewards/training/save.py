"""Where a reward model goes: --output-dir checked before any work, and the model written
whole or not at all."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ple.errors import UserError
from ple.rewards.texts import REWARD_INFO_FILE
from ple.rewards.training.config import RewardTrainConfig

EVAL_FILE = "reward_eval.json"


def check_output_dir(cfg: RewardTrainConfig) -> None:
    """Refuse an --output-dir that is a file, or that holds something other than a reward
    model ple wrote, or one without --overwrite."""
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not cfg.overwrite:
            raise UserError(f"--output-dir {out} is not empty; pass --overwrite to replace the "
                            f"reward model in it or choose another directory")
        if not (out / REWARD_INFO_FILE).is_file():
            raise UserError(f"--output-dir {out} is not empty and holds no reward model "
                            f"written by ple (no {REWARD_INFO_FILE}); refusing to replace it")


def save_reward_model(cfg: RewardTrainConfig, model, tokenizer, result: dict,
                      info: dict | None = None) -> None:
    """Write the model, its tokenizer (cutting at --max-length on --truncation-side, as
    training did), ple_reward.json (what serving must know, and `info` on top) and
    reward_eval.json (`result`) into a fresh directory next to --output-dir, then move it
    into place: an interrupted save leaves no half-written reward model behind."""
    out = Path(cfg.output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.model_max_length = cfg.max_length
        tokenizer.save_pretrained(tmp)
        served = {"written_by": "ple reward train", "kind": cfg.kind,
                  "text_format": cfg.text_format, "max_length": cfg.max_length,
                  "truncation_side": cfg.truncation_side, "base": cfg.base,
                  "reward": "logit of label 1" if cfg.kind == "classifier"
                  else "the single logit", **(info or {})}
        (tmp / REWARD_INFO_FILE).write_text(json.dumps(served, indent=2) + "\n")
        (tmp / EVAL_FILE).write_text(json.dumps(result, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
