"""Train a reward model from labelled or paired data: `ple reward train`.

- kind `classifier`: records `{"text", "label"}` with label 0 or 1 -> a sequence classifier
  with two outputs, trained with cross-entropy; its reward is the logit of label 1 (the paper's
  IMDb sentiment reward: the positive-class logit).
- kind `preference`: records `{"prompt", "chosen", "rejected"}` (TL;DR style) or HH
  transcripts `{"chosen", "rejected"}` -> a one-output reward model trained with the
  Bradley–Terry loss −log σ(r(x, y_chosen) − r(x, y_rejected)) by `trl.RewardTrainer`
  (the paper's TL;DR reward model).

The base is any causal LM or encoder (hub id or directory), loaded as
`AutoModelForSequenceClassification`; `default` (SmolLM2-135M-Instruct, LoRA r=8, α=16 on all
linear layers of the backbone and a fully trained `score` head) or `tiny` (random, for tests).
All data is checked before any model loads and before anything is written. The new head
first starts as a linear probe (L2 logistic regression on the frozen base's features of up to
`probe_examples` training examples), then everything trainable is fine-tuned (LP-FT): on 2
CPU cores that is what makes a 135M-parameter model a usable classifier within minutes (see
docs/reward-models.md). At the end a held-out part is scored (accuracy, or pairwise
accuracy) and the model is saved — the LoRA adapter merged into the weights — as a directory
that `AutoModelForSequenceClassification` and `AutoTokenizer` load, and that every method
takes as `--reward`.

What the model reads for (x, y) is `ple.rewards.texts.reward_texts` in the run's text
format (`plain` = x + y by default, or `chat`), recorded in `ple_reward.json` so that serving
uses the same format as training. Texts over `max_length` tokens are cut on the
`truncation_side` (default: keep the end, where the responses of a pair and a review's
verdict are), counted in `reward_eval.json`; the saved tokenizer carries the same limit and
side, so serving cuts the same way and counts what it cuts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ple.config import true_or_false
from ple.data_files import Record, load_records
from ple.errors import UserError
from ple.rewards.texts import (REWARD_INFO_FILE, TEXT_FORMATS, adds_special_tokens,
                               reward_texts)
from ple.hh_format import split_hh

KINDS = ("classifier", "preference")
EVAL_FILE = "reward_eval.json"


def _field(default: Any, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RewardTrainConfig:
    """Every setting of `ple reward train` (each is also a flag: `--max-length` etc.)."""

    kind: str = _field(MISSING, "classifier (text + 0/1 label; reward = logit of label 1) or "
                       "preference (prompt, chosen, rejected; Bradley–Terry reward model)",
                       choices=KINDS)
    data: str = _field(MISSING, "training data: a .jsonl, .jsonl.gz, .json or .parquet file, "
                       "or a hub dataset name (its train split) when online; several files "
                       "separated by commas are pooled, each held out from by "
                       "--eval-fraction, and the held-out accuracy is also reported per file")
    output_dir: str = _field(MISSING, "where the reward model is saved (a directory that "
                             "--reward accepts)")
    base: str = _field("default", "base model: `default` (SmolLM2-135M-Instruct, offline), "
                       "`tiny` (random 0.8M-parameter Llama, for tests), or any causal LM or "
                       "encoder by hub id or local directory (never trust_remote_code)")
    eval_data: str | None = _field(None, "held-out data in the same format; without it a "
                                   "seeded --eval-fraction of --data is held out")
    eval_fraction: float = _field(0.1, "share of --data held out for evaluation when no "
                                  "--eval-data is given (seeded by --seed)")
    max_train_examples: int | None = _field(None, "train on a seeded random subset of this "
                                            "many examples (none: all)")
    max_eval_examples: int | None = _field(None, "evaluate on a seeded random subset of this "
                                           "many held-out examples (none: all)")
    epochs: float = _field(1.0, "passes over the training examples (ignored when --max-steps "
                           "is given)")
    max_steps: int | None = _field(None, "optimizer steps; overrides --epochs")
    batch_size: int = _field(8, "examples (classifier) or pairs (preference) per optimizer "
                             "step")
    probe_examples: int = _field(512, "before fine-tuning, fit the new head as a linear "
                                 "probe (L2 logistic regression on the frozen base model's "
                                 "features) on up to this many training examples (pairs): "
                                 "linear probing, then fine-tuning (LP-FT). 0: start from a "
                                 "random head")
    learning_rate: float = _field(1e-4, "peak AdamW learning rate (linear warm-up, then "
                                  "linear decay to 0)")
    head_learning_rate: float | None = _field(None, "peak learning rate of the new score "
                                              "head (none: --learning-rate)")
    warmup_ratio: float = _field(0.1, "share of the steps spent warming the learning rate up")
    max_length: int = _field(256, "tokens per text; longer texts are cut (and counted). The "
                             "saved tokenizer keeps this limit, so serving cuts the same way")
    truncation_side: str = _field("left", "which end of a long text is cut: left keeps the "
                                  "end (a pair's responses, a review's verdict), right keeps "
                                  "the beginning", choices=("left", "right"))
    text_format: str = _field("plain", "what the model reads for (prompt, response): plain = "
                              "prompt + response; chat = the base tokenizer's chat template "
                              "over the conversation (preference only). Recorded in "
                              "ple_reward.json and used when serving", choices=TEXT_FORMATS)
    use_lora: bool = _field(True, "train LoRA adapters (merged into the weights when saved) "
                            "and the score head; false: train every parameter")
    lora_r: int = _field(8, "LoRA rank (the paper: 8)")
    lora_alpha: int = _field(16, "LoRA alpha (the paper: 16)")
    skip_invalid_pairs: bool = _field(False, "drop preference pairs with an empty response "
                                      "or identical sides instead of refusing the file (the "
                                      "official HH-RLHF files hold a few); how many were "
                                      "dropped is printed and written to reward_eval.json")
    seed: int = _field(0, "seed of the held-out split, the subsets, the data order and the "
                       "new score head")
    overwrite: bool = _field(False, "replace an earlier reward model in --output-dir")

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


# --- the command line (flags generated from the config, as `ple train` does) -------------

def _flag_type(f):
    base = f.type.split(" | ")[0]
    optional = "None" in f.type

    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        if base == "bool":
            return true_or_false(text)
        try:
            return {"int": int, "float": float, "str": str}[base](text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {base}, got {text!r}") from None
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per RewardTrainConfig field (`--overwrite` is a switch)."""
    for f in fields(RewardTrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if f.name == "overwrite":
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        required = f.default is MISSING
        parser.add_argument(flag, dest=f.name, type=_flag_type(f), required=required,
                            choices=f.metadata.get("choices"),
                            default=None if required else f.default,
                            help=help_text + ("" if required else f" (default: {f.default})"))


def config_from_args(args: argparse.Namespace) -> RewardTrainConfig:
    return RewardTrainConfig(**{f.name: getattr(args, f.name) for f in fields(RewardTrainConfig)})


# --- data: read and check everything before any model loads ------------------------------

@dataclass(frozen=True)
class Example:
    """One classifier example (a text and its label) or one preference pair (the chosen and
    the rejected (prompt, response); the prompts are the same except in odd HH records)."""

    where: str
    chosen: tuple[str, str]
    rejected: tuple[str, str] | None = None
    label: int | None = None
    source: str = ""  # the data file it came from


class InvalidPair(UserError):
    """A preference pair that cannot teach anything: an empty side, or both sides equal."""


def _string(record: Record, key: str, kind: str, allow_empty: bool = False) -> str:
    if key not in record.data:
        raise UserError(f"{record.where}: field `{key}` is missing (reward kind {kind})")
    value = record.data[key]
    if not isinstance(value, str):
        raise UserError(f"{record.where}: field `{key}` must be a string, got "
                        f"{type(value).__name__} (reward kind {kind})")
    if not allow_empty and not value.strip():
        raise UserError(f"{record.where}: field `{key}` is empty (reward kind {kind})")
    return value


def classifier_example(record: Record) -> Example:
    text = _string(record, "text", "classifier")
    if "label" not in record.data:
        raise UserError(f"{record.where}: field `label` is missing (reward kind classifier "
                        f"needs 0 or 1)")
    label = record.data["label"]
    if type(label) is not int or label not in (0, 1):  # noqa: E721 - True is not a label
        raise UserError(f"{record.where}: field `label` must be 0 or 1, got {label!r}")
    return Example(record.where, ("", text), label=label)


def preference_example(record: Record) -> Example:
    data = record.data
    if "chosen" not in data or "rejected" not in data:
        missing = "chosen" if "chosen" not in data else "rejected"
        raise UserError(f"{record.where}: field `{missing}` is missing (reward kind "
                        f"preference needs `prompt`, `chosen`, `rejected`, or HH transcripts "
                        f"`chosen`, `rejected`)")
    chosen = _string(record, "chosen", "preference", allow_empty=True)
    rejected = _string(record, "rejected", "preference", allow_empty=True)
    if "prompt" in data:
        prompt = _string(record, "prompt", "preference", allow_empty=True)
        pair = (prompt, chosen), (prompt, rejected)
    else:  # HH: full transcripts; the response is the last Assistant turn
        pair = split_hh(chosen, record), split_hh(rejected, record)
    for side, (_, response) in zip(("chosen", "rejected"), pair):
        if not response.strip():
            raise InvalidPair(f"{record.where}: the `{side}` response is empty (a preference "
                              f"pair needs two non-empty responses)")
    if pair[0] == pair[1]:
        raise InvalidPair(f"{record.where}: `chosen` and `rejected` are identical (a "
                          f"preference pair must differ)")
    return Example(record.where, pair[0], rejected=pair[1])


def read_examples(source: str, kind: str, skip_invalid_pairs: bool = False
                  ) -> tuple[list[Example], int]:
    """(the examples of a file, how many invalid pairs were dropped)."""
    make = classifier_example if kind == "classifier" else preference_example
    examples, dropped = [], 0
    for record in load_records(source, hub_dataset=True):
        try:
            examples.append(dataclasses.replace(make(record), source=source))
        except InvalidPair:
            if not skip_invalid_pairs:
                raise
            dropped += 1
    if not examples:
        raise UserError(f"data {source}: no records" + (f" ({dropped} invalid pairs dropped)"
                                                         if dropped else ""))
    return examples, dropped


def data_sources(cfg: RewardTrainConfig) -> list[str]:
    return [part.strip() for part in cfg.data.split(",") if part.strip()]


def held_out_positions(n: int, fraction: float, seed: int) -> list[int]:
    """Which of a file's n examples are held out when no --eval-data is given: a seeded
    `fraction` of them (at least one, never all), in file order."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[:min(n - 1, max(1, round(n * fraction)))])


def split_examples(cfg: RewardTrainConfig) -> tuple[list[Example], list[Example], int]:
    """(train, held-out, invalid pairs dropped), after the optional seeded subsets. Every
    record of every file is checked first, also those the subsets leave out. Without
    --eval-data each file of --data gives its own --eval-fraction to the held-out part."""
    train, held_out, dropped = [], [], 0
    for source in data_sources(cfg):
        examples, dropped_here = read_examples(source, cfg.kind, cfg.skip_invalid_pairs)
        dropped += dropped_here
        if cfg.eval_data is not None:
            train += examples
            continue
        if len(examples) < 2:
            raise UserError(f"data {source}: {len(examples)} example; at least 2 are needed "
                            f"to hold some out (or give --eval-data)")
        out = set(held_out_positions(len(examples), cfg.eval_fraction, cfg.seed))
        held_out += [e for i, e in enumerate(examples) if i in out]
        train += [e for i, e in enumerate(examples) if i not in out]
    if cfg.eval_data is not None:
        held_out, dropped_eval = read_examples(cfg.eval_data, cfg.kind, cfg.skip_invalid_pairs)
        dropped += dropped_eval
    rng = random.Random(cfg.seed + 1)
    if cfg.max_train_examples is not None and len(train) > cfg.max_train_examples:
        train = rng.sample(train, cfg.max_train_examples)
    if cfg.max_eval_examples is not None and len(held_out) > cfg.max_eval_examples:
        held_out = rng.sample(held_out, cfg.max_eval_examples)
    if cfg.kind == "classifier":
        labels = {e.label for e in train}
        if len(labels) < 2:
            raise UserError(f"data {cfg.data}: every training label is {labels.pop()}; a "
                            f"classifier needs examples of both 0 and 1")
    return train, held_out, dropped


def check_output_dir(cfg: RewardTrainConfig) -> None:
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


# --- models --------------------------------------------------------------------------------

@contextmanager
def _quiet_transformers():
    """Loading a causal LM as a classifier reports the new `score` head as missing: expected,
    and noise for our users."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_base_tokenizer(base: str, truncation_side: str = "left"):
    """The base model's tokenizer, with a pad token and cutting on `truncation_side` — the
    side training cuts on, and (saved with it) the side serving cuts on."""
    from transformers import AutoTokenizer

    if base in ("default", "tiny"):
        from ple.models import default_model_dir

        tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    else:
        path = Path(base)
        if not path.exists() and base.startswith(("/", ".", "~")):
            raise UserError(f"--base {base}: no such directory")
        try:
            tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
        except (OSError, ValueError, TypeError) as e:
            if path.is_dir():
                raise UserError(f"--base {base}: the directory has no tokenizer (a reward "
                                f"model needs its base model's tokenizer)") from None
            first = str(e).splitlines()[0][:160] if str(e) else e.__class__.__name__
            raise UserError(f"--base {base}: not a local directory, and not loadable as a "
                            f"hub id here ({first})") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"--base {base}: its tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = truncation_side
    tokenizer.init_kwargs["truncation_side"] = truncation_side  # save_pretrained keeps it
    return tokenizer


def load_base_model(base: str, num_labels: int, tokenizer, seed: int):
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification

    from ple.models import default_model_dir, tiny_config

    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the new score head
        if base == "tiny":
            model = LlamaForSequenceClassification(
                tiny_config(len(tokenizer), num_labels=num_labels))
        else:
            name = str(default_model_dir()) if base == "default" else base
            try:
                with _quiet_transformers():
                    model = AutoModelForSequenceClassification.from_pretrained(
                        name, num_labels=num_labels, trust_remote_code=False,
                        ignore_mismatched_sizes=True, dtype=torch.float32)
            except (OSError, ValueError) as e:
                raise UserError(f"--base {base}: cannot load as a sequence-classification "
                                f"model ({str(e).splitlines()[0][:200]})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def head_name(model) -> str | None:
    """The new classification head: `score` (decoder models) or `classifier` (encoders)."""
    for name in ("score", "classifier"):
        if hasattr(model, name):
            return name
    return None


def pooled_features(model, head: str, ids: list[list[int]], batch_size: int, pad_id: int,
                    desc: str):
    """What the head reads for each text (the last real token's final hidden state for a
    decoder, the pooled output for an encoder): the model run with its head swapped for the
    identity, so the model's own pooling picks the position."""
    import torch

    original = getattr(model, head)
    setattr(model, head, torch.nn.Identity())
    try:
        return score_ids(model, ids, batch_size, pad_id, desc)
    finally:
        setattr(model, head, original)


PROBE_L2 = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def fit_probe(x, y, seed: int, groups: list | None = None) -> tuple[Any, dict]:
    """L2-regularised logistic regression without intercept on features scaled to unit
    spread. The strength is chosen on a seeded fifth of the `groups` (default: one per row):
    rows of one group — the pairs of one prompt, a pair and its mirror image — are either all
    fitted or all validated, so that validation does not see what was fitted. Returns the
    weight vector for the unscaled features and a description."""
    import torch

    scale = x.std(0) + 1e-6
    z = x / scale

    def fit(z, y, lam):
        w = torch.zeros(z.shape[1], dtype=z.dtype, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w, y) + lam * w @ w
            loss.backward()
            return loss
        opt.step(closure)
        return w.detach()

    groups = list(range(len(y))) if groups is None else groups
    names = sorted(set(groups), key=str)
    random.Random(seed).shuffle(names)
    held = set(names[:max(1, len(names) // 5)])
    in_val = torch.tensor([g in held for g in groups])
    val, fit_part = in_val.nonzero()[:, 0], (~in_val).nonzero()[:, 0]
    losses = {}
    for lam in PROBE_L2:
        w = fit(z[fit_part], y[fit_part], lam)
        losses[lam] = torch.nn.functional.binary_cross_entropy_with_logits(
            z[val] @ w, y[val]).item()
    lam = min(losses, key=losses.get)
    w = fit(z, y, lam)
    accuracy = ((z @ w > 0).float() == y).float().mean().item()
    return w / scale, {"l2": lam, "fit_accuracy": round(accuracy, 4)}


def init_head_by_probe(cfg: RewardTrainConfig, model, head: str, train: list[Example],
                       encoded: list[list[int]], rejected: list[list[int]] | None,
                       pad_id: int) -> dict:
    """Linear probing before fine-tuning: the head starts where logistic regression on the
    frozen features puts it (Bradley–Terry on feature differences for pairs), so that
    fine-tuning starts from a useful head instead of distorting the features to fit a random
    one (Kumar et al. 2022, LP-FT)."""
    import torch

    started = time.time()
    n = min(cfg.probe_examples, len(train))
    pick = sorted(random.Random(cfg.seed + 3).sample(range(len(train)), n))
    batch = max(cfg.batch_size, 16)
    features = pooled_features(model, head, [encoded[i] for i in pick], batch, pad_id,
                               "linear probe: features")
    if rejected is None:
        x, y = features, torch.tensor([float(train[i].label) for i in pick])
        groups = None
    else:  # Bradley–Terry: P(chosen > rejected) = σ(w·(h_chosen − h_rejected)), mirrored
        diff = features - pooled_features(model, head, [rejected[i] for i in pick], batch,
                                          pad_id, "linear probe: features (rejected)")
        x, y = torch.cat([diff, -diff]), torch.cat([torch.ones(n), torch.zeros(n)])
        groups = [train[i].chosen[0] for i in pick] * 2  # by prompt
    w, info = fit_probe(x.double(), y.double(), cfg.seed, groups)
    module = getattr(model, head)
    if not isinstance(module, torch.nn.Linear):
        raise UserError(f"--base {cfg.base}: its `{head}` head is not one linear layer; give "
                        f"--probe-examples 0")
    with torch.no_grad():  # 2 outputs: logit(1) - logit(0) = w.h; 1 output: r = w.h
        weight = torch.stack([-w / 2, w / 2]) if rejected is None else w[None]
        module.weight.copy_(weight.to(module.weight.dtype))
        if module.bias is not None:
            module.bias.zero_()
    return {"examples": n, **info, "seconds": round(time.time() - started, 1)}


def trainable(cfg: RewardTrainConfig, model):
    """With LoRA: the model with adapters on every linear layer of the backbone and a fully
    trained head (`modules_to_save`); without: the model itself, every weight trained."""
    if not cfg.use_lora:
        return model
    from peft import LoraConfig, get_peft_model

    head = head_name(model)
    if head is None:
        raise UserError(f"--base {cfg.base}: model class {type(model).__name__} has no `score` "
                        f"or `classifier` head for LoRA to leave trainable; give --use-lora "
                        f"false to train every weight")
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                        target_modules="all-linear", task_type="SEQ_CLS",
                        modules_to_save=[head])
    return get_peft_model(model, config)


def make_optimizer(cfg: RewardTrainConfig, model, head: str | None):
    """AdamW over the trainable weights, the new head at its own learning rate."""
    import torch

    groups: dict[bool, list] = {True: [], False: []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            is_head = head is not None and "lora_" not in name and f".{head}." in f".{name}"
            groups[is_head].append(param)
    lrs = {False: cfg.learning_rate, True: cfg.head_learning_rate or cfg.learning_rate}
    return torch.optim.AdamW([{"params": ps, "lr": lrs[is_head]} for is_head, ps in
                              groups.items() if ps], lr=cfg.learning_rate, weight_decay=0.0)


# --- tokenized data ------------------------------------------------------------------------

@dataclass
class Encoded:
    ids: list[list[int]]
    truncated: int


def encode(tokenizer, cfg: RewardTrainConfig, pairs: list[tuple[str, str]]) -> Encoded:
    """Token ids of the reward texts of (prompt, response) pairs, cut at max_length on the
    truncation side exactly as the saved tokenizer will cut when serving."""
    texts = reward_texts(tokenizer, cfg.text_format, [p for p, _ in pairs],
                         [r for _, r in pairs])
    special = adds_special_tokens(cfg.text_format)
    full = tokenizer(texts, add_special_tokens=special)["input_ids"]
    cut = tokenizer(texts, add_special_tokens=special, truncation=True,
                    max_length=cfg.max_length)["input_ids"]
    return Encoded(cut, sum(len(ids) > cfg.max_length for ids in full))


def _batches(ids: list[list[int]], size: int, pad_id: int):
    import torch

    for i in range(0, len(ids), size):
        chunk = ids[i:i + size]
        width = max(len(x) for x in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, x in enumerate(chunk):  # right padding; the head reads the last real token
            input_ids[row, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[row, :len(x)] = 1
        yield {"input_ids": input_ids, "attention_mask": mask}


def score_ids(model, ids: list[list[int]], batch_size: int, pad_id: int, desc: str):
    """Logits (n, num_labels) for token-id lists: batched, no grad, eval mode."""
    import torch
    from tqdm.auto import tqdm

    model.eval()
    rows = []
    with torch.no_grad():
        for batch in tqdm(_batches(ids, batch_size, pad_id), desc=desc, unit="batch",
                          total=math.ceil(len(ids) / batch_size)):
            rows.append(model(**batch).logits.float())
    return torch.cat(rows)


# --- training ------------------------------------------------------------------------------

def total_steps(cfg: RewardTrainConfig, n_train: int) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))


def train_classifier(cfg: RewardTrainConfig, model, optimizer, ids: list[list[int]],
                     labels: list[int], pad_id: int) -> list[dict]:
    """Cross-entropy on the two logits: AdamW, linear warm-up and decay, gradients clipped at
    1 (the transformers Trainer's defaults, as the preference path uses). Returns the loss of
    every step."""
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    steps = total_steps(cfg, len(ids))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    rng = random.Random(cfg.seed + 2)
    order: list[int] = []
    log = []
    model.train()
    bar = tqdm(range(1, steps + 1), desc="training classifier", unit="step")
    for step in bar:
        batch_index = []
        while len(batch_index) < min(cfg.batch_size, len(ids)):
            if not order:
                order = list(range(len(ids)))
                rng.shuffle(order)
            batch_index.append(order.pop())
        batch = next(_batches([ids[i] for i in batch_index], len(batch_index), pad_id))
        target = torch.tensor([labels[i] for i in batch_index], dtype=torch.long)
        loss = torch.nn.functional.cross_entropy(model(**batch).logits.float(), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.append({"step": step, "loss": round(loss.item(), 6)})
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return log


def train_preference(cfg: RewardTrainConfig, model, optimizer, tokenizer,
                     chosen: list[list[int]], rejected: list[list[int]], work_dir: str):
    """Bradley–Terry training with trl.RewardTrainer on pre-tokenized pairs (TRL's own
    tokenization would append EOS and drop, not cut, long pairs; serving does neither).
    Returns (the trained model, the logged losses)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    steps = total_steps(cfg, len(chosen))
    args = RewardConfig(
        output_dir=work_dir, max_steps=steps, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, lr_scheduler_type="linear",
        warmup_steps=int(cfg.warmup_ratio * steps), weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=max(1, steps // 20), save_strategy="no", eval_strategy="no",
        report_to="none", bf16=False, fp16=False, activation_checkpointing=False,
        max_length=None, seed=cfg.seed, data_seed=cfg.seed, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=False)
    trainer = RewardTrainer(
        model=model, args=args, processing_class=tokenizer, optimizers=(optimizer, None),
        train_dataset=Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected}))
    trainer.train()
    log = [{"step": e["step"], "loss": round(e["loss"], 6)}
           for e in trainer.state.log_history if "loss" in e]
    return trainer.model, log


def _merged(model):
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def save_reward_model(cfg: RewardTrainConfig, model, tokenizer, result: dict) -> None:
    """Write the model, tokenizer, ple_reward.json and reward_eval.json into a fresh
    directory next to --output-dir, then move it into place."""
    out = Path(cfg.output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.model_max_length = cfg.max_length
        tokenizer.save_pretrained(tmp)
        info = {"written_by": "ple reward train", "kind": cfg.kind,
                "text_format": cfg.text_format, "max_length": cfg.max_length,
                "truncation_side": cfg.truncation_side, "base": cfg.base,
                "reward": "logit of label 1" if cfg.kind == "classifier" else "the single logit"}
        (tmp / REWARD_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / EVAL_FILE).write_text(json.dumps(result, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def train_reward_model(cfg: RewardTrainConfig) -> dict:
    """Check everything, train, evaluate on the held-out part, save. Returns what
    reward_eval.json holds."""
    cfg.check()
    check_output_dir(cfg)
    train, held_out, dropped = split_examples(cfg)
    tokenizer = load_base_tokenizer(cfg.base, cfg.truncation_side)
    if cfg.text_format == "chat" and not tokenizer.chat_template:
        raise UserError(f"--text-format chat: the tokenizer of --base {cfg.base} has no chat "
                        f"template")
    started = time.time()
    import torch

    torch.manual_seed(cfg.seed)
    preference = cfg.kind == "preference"
    model = load_base_model(cfg.base, 1 if preference else 2, tokenizer, cfg.seed)
    pad_id = tokenizer.pad_token_id
    head = head_name(model)
    train_c = encode(tokenizer, cfg, [e.chosen for e in train])
    train_r = encode(tokenizer, cfg, [e.rejected for e in train]) if preference else None
    probe = None
    if cfg.probe_examples:
        if head is None:
            raise UserError(f"--base {cfg.base}: model class {type(model).__name__} has no "
                            f"`score` or `classifier` head to probe; give --probe-examples 0")
        probe = init_head_by_probe(cfg, model, head, train, train_c.ids,
                                   train_r.ids if train_r else None, pad_id)
    model = trainable(cfg, model)
    optimizer = make_optimizer(cfg, model, head)
    if preference:
        eval_c, eval_r = (encode(tokenizer, cfg, [e.chosen for e in held_out]),
                          encode(tokenizer, cfg, [e.rejected for e in held_out]))
        with tempfile.TemporaryDirectory(prefix="ple-reward-") as work_dir:
            model, log = train_preference(cfg, model, optimizer, tokenizer, train_c.ids,
                                          train_r.ids, work_dir)
        train_truncated = train_c.truncated + train_r.truncated
        eval_truncated = eval_c.truncated + eval_r.truncated
    else:
        eval_enc = encode(tokenizer, cfg, [e.chosen for e in held_out])
        log = train_classifier(cfg, model, optimizer, train_c.ids, [e.label for e in train],
                               pad_id)
        train_truncated, eval_truncated = train_c.truncated, eval_enc.truncated
    train_seconds = time.time() - started
    model = _merged(model)
    started = time.time()
    eval_batch = max(cfg.batch_size, 16)
    if preference:
        r_chosen = score_ids(model, eval_c.ids, eval_batch, pad_id, "held out (chosen)")[:, 0]
        r_rejected = score_ids(model, eval_r.ids, eval_batch, pad_id,
                               "held out (rejected)")[:, 0]
        correct = r_chosen > r_rejected
        metric = {"metric": "pairwise_accuracy",
                  "pairwise_accuracy": correct.float().mean().item(),
                  "ties": int((r_chosen == r_rejected).sum().item()),
                  "mean_margin": (r_chosen - r_rejected).mean().item()}
    else:
        logits = score_ids(model, eval_enc.ids, eval_batch, pad_id, "held out")
        labels = torch.tensor([e.label for e in held_out])
        correct = logits.argmax(-1) == labels
        metric = {"metric": "accuracy", "accuracy": correct.float().mean().item(),
                  "eval_label_1_share": labels.float().mean().item()}
    if len(data_sources(cfg)) > 1 and cfg.eval_data is None:
        metric["per_source"] = per_source_accuracy(held_out, correct.tolist())
    result = {
        "kind": cfg.kind, **metric,
        "n_train": len(train), "n_eval": len(held_out),
        **({"invalid_pairs_dropped": dropped} if preference else {}),
        "eval_source": cfg.eval_data or f"{cfg.eval_fraction:g} of each of {cfg.data} "
                                         f"(seed {cfg.seed})",
        "train_texts_truncated": train_truncated, "eval_texts_truncated": eval_truncated,
        "texts_per_example": 2 if preference else 1,
        "max_length": cfg.max_length, "truncation_side": cfg.truncation_side,
        "steps": total_steps(cfg, len(train)), "probe": probe,
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.time() - started, 1),
        "first_loss": log[0]["loss"] if log else None,
        "last_loss": log[-1]["loss"] if log else None,
        "losses": log, "config": asdict(cfg),
    }
    save_reward_model(cfg, model, tokenizer, result)
    return result


def per_source_accuracy(held_out: list[Example], correct: list[bool]) -> dict:
    """{data file: {"n", "accuracy", "se"}} over the held-out examples of each file."""
    by_source: dict[str, list[bool]] = {}
    for example, ok in zip(held_out, correct):
        by_source.setdefault(example.source, []).append(bool(ok))
    result = {}
    for source, oks in by_source.items():
        accuracy = sum(oks) / len(oks)
        result[source] = {"n": len(oks), "accuracy": accuracy,
                          "se": math.sqrt(accuracy * (1 - accuracy) / len(oks))}
    return result


def describe(result: dict) -> str:
    """The line printed at the end of `ple reward train`."""
    name = result["metric"].replace("_", " ")
    return (f"held-out {name}: {result[result['metric']]:.3f} on {result['n_eval']} "
            f"{'pairs' if result['kind'] == 'preference' else 'examples'} (trained on "
            f"{result['n_train']}, {result['steps']} steps, {result['train_seconds']:.0f} s; "
            f"texts cut at {result['max_length']} tokens: {result['train_texts_truncated']} "
            f"in training, {result['eval_texts_truncated']} held out"
            + (f"; invalid pairs dropped: {result['invalid_pairs_dropped']}"
               if result.get("invalid_pairs_dropped") else "") + ")"
            + "".join(f"; {Path(source).parent.name or source}: {v['accuracy']:.3f} on {v['n']}"
                      for source, v in result.get("per_source", {}).items()))
