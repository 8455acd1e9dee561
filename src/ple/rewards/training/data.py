"""The training data of `ple reward train`: records read, checked and split into training
and held-out examples, all before any model loads, so that bad data costs nothing and is
refused in one line naming the file and line.

- kind `classifier`: records `{"text", "label"}`, label 0 or 1;
- kind `preference`: records `{"prompt", "chosen", "rejected"}` (TL;DR style), or HH
  transcripts `{"chosen", "rejected"}` whose prompt is everything up to the last Assistant
  turn.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from ple.data_files import Record, load_records
from ple.errors import UserError
from ple.hh_format import split_hh
from ple.rewards.training.config import RewardTrainConfig


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
    """The example of a classifier record, or a UserError naming its line."""
    text = _string(record, "text", "classifier")
    if "label" not in record.data:
        raise UserError(f"{record.where}: field `label` is missing (reward kind classifier "
                        f"needs 0 or 1)")
    label = record.data["label"]
    if type(label) is not int or label not in (0, 1):  # noqa: E721 - True is not a label
        raise UserError(f"{record.where}: field `label` must be 0 or 1, got {label!r}")
    return Example(record.where, ("", text), label=label)


def preference_example(record: Record) -> Example:
    """The pair of a preference record, or a UserError (InvalidPair for an empty side or
    equal sides) naming its line."""
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
    """The files (or hub datasets) of --data."""
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

