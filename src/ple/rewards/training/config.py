"""`RewardTrainConfig`: every setting of `ple reward train`, each one also a flag
(`max_length` is `--max-length`; ple.rewards.training.command makes the flags).

Each field's help says what it is, its default and, where the paper gives one, the paper's
value; `ple reward train --help` and docs/config-reference.md print that text.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field
from typing import Any

from ple.errors import UserError
from ple.rewards.texts import TEXT_FORMATS

KINDS = ("classifier", "preference")


def _field(default: Any, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RewardTrainConfig:
    """Every setting of `ple reward train`."""

    kind: str = _field(MISSING, "classifier (text + 0/1 label; reward = logit of label 1, "
                       "as the paper's IMDb sentiment reward) or preference (prompt, chosen, "
                       "rejected; a Bradley–Terry reward model, as the paper's TL;DR one). "
                       "Required", choices=KINDS)
    data: str = _field(MISSING, "training data: a .jsonl, .jsonl.gz, .json or .parquet file, "
                       "or a hub dataset name (its train split) when online; several files "
                       "separated by commas are pooled, each held out from by "
                       "--eval-fraction, and the held-out accuracy is also reported per "
                       "file. Required")
    output_dir: str = _field(MISSING, "where the reward model is saved (a directory that "
                             "--reward accepts). Required")
    base: str = _field("default", "base model: `default` (SmolLM2-135M-Instruct, offline), "
                       "`tiny` (random 0.8M-parameter Llama, for tests), or any causal LM or "
                       "encoder by hub id or local directory (never trust_remote_code). "
                       "Default `default`")
    eval_data: str | None = _field(None, "held-out data in the same format. Default none: a "
                                   "seeded --eval-fraction of --data is held out")
    eval_fraction: float = _field(0.1, "share of --data held out for evaluation when no "
                                  "--eval-data is given (seeded by --seed). Default 0.1")
    max_train_examples: int | None = _field(None, "train on a seeded random subset of this "
                                            "many examples. Default none: all")
    max_eval_examples: int | None = _field(None, "evaluate on a seeded random subset of this "
                                           "many held-out examples. Default none: all")
    epochs: float = _field(1.0, "passes over the training examples (ignored when --max-steps "
                           "is given). Default 1")
    max_steps: int | None = _field(None, "optimizer steps; overrides --epochs. Default none")
    batch_size: int = _field(8, "examples (classifier) or pairs (preference) per optimizer "
                             "step. Default 8")
    probe_examples: int = _field(512, "before fine-tuning, fit the new head as a linear "
                                 "probe (L2 logistic regression on the frozen base model's "
                                 "features) on up to this many training examples (pairs): "
                                 "linear probing, then fine-tuning (LP-FT). 0: start from a "
                                 "random head. Default 512")
    learning_rate: float = _field(1e-4, "peak AdamW learning rate (linear warm-up, then "
                                  "linear decay to 0). Default 1e-4")
    head_learning_rate: float | None = _field(None, "peak learning rate of the new score "
                                              "head. Default none: --learning-rate")
    warmup_ratio: float = _field(0.1, "share of the steps spent warming the learning rate "
                                 "up. Default 0.1")
    max_length: int = _field(256, "tokens per text; longer texts are cut (and counted). The "
                             "saved tokenizer keeps this limit, so serving cuts the same way. "
                             "Default 256")
    truncation_side: str = _field("left", "which end of a long text is cut: left keeps the "
                                  "end (a pair's responses, a review's verdict), right keeps "
                                  "the beginning. Default left", choices=("left", "right"))
    text_format: str = _field("plain", "what the model reads for (prompt, response): plain = "
                              "prompt + response; chat = the base tokenizer's chat template "
                              "over the conversation (preference only). Recorded in "
                              "ple_reward.json and used when serving. Default plain",
                              choices=TEXT_FORMATS)
    use_lora: bool = _field(True, "train LoRA adapters (merged into the weights when saved) "
                            "and the score head; false: train every parameter. Default true")
    lora_r: int = _field(8, "LoRA rank. Default 8 (the paper: 8)")
    lora_alpha: int = _field(16, "LoRA alpha. Default 16 (the paper: 16)")
    skip_invalid_pairs: bool = _field(False, "drop preference pairs with an empty response "
                                      "or identical sides instead of refusing the file (the "
                                      "official HH-RLHF files hold a few); how many were "
                                      "dropped is printed and written to reward_eval.json. "
                                      "Default false")
    seed: int = _field(0, "seed of the held-out split, the subsets, the data order and the "
                       "new score head. Default 0")
    overwrite: bool = _field(False, "replace an earlier reward model in --output-dir. "
                             "Default false")

    def check(self) -> None:
        """Refuse values that cannot work, naming the flag."""
        def bad(name: str, value, rule: str):
            raise UserError(f"--{name.replace('_', '-')} = {value}: {rule}")

        if self.kind not in KINDS:
            bad("kind", self.kind, f"must be one of {', '.join(KINDS)}")
        if self.text_format not in TEXT_FORMATS:
            bad("text_format", self.text_format, f"must be one of {', '.join(TEXT_FORMATS)}")
        if self.text_format == "chat" and self.kind == "classifier":
            bad("text_format", "chat", "only for --kind preference (a classifier example is "
                "one text, not a conversation)")
        if self.truncation_side not in ("left", "right"):
            bad("truncation_side", self.truncation_side, "must be left or right")
        if not 0 < self.eval_fraction < 1:
            bad("eval_fraction", self.eval_fraction, "must be in (0, 1)")
        for name in ("batch_size", "max_length", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                bad(name, getattr(self, name), "must be at least 1")
        if self.probe_examples < 0:
            bad("probe_examples", self.probe_examples, "must be at least 0")
        for name in ("max_steps", "max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                bad(name, value, "must be at least 1 (or none)")
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            bad("epochs", self.epochs, "must be > 0")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            bad("learning_rate", self.learning_rate, "must be > 0")
        if self.head_learning_rate is not None and not (
                math.isfinite(self.head_learning_rate) and self.head_learning_rate > 0):
            bad("head_learning_rate", self.head_learning_rate, "must be > 0 (or none)")
        if not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
