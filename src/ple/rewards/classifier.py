"""A Hugging Face sequence-classification model as R(x, y), from the hub or a local path.

What text the model reads for (x, y) is its *text format* (ple.rewards.texts: `plain` or
`chat`). A directory written by `ple reward train` records the format it was trained on in
`ple_reward.json`, and that format is used; any other model uses `chat` when its tokenizer
has a chat template and `plain` otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from ple.errors import UserError
from ple.rewards.gated import gated_reward
from ple.rewards.texts import (REWARD_INFO_FILE, TEXT_FORMATS, adds_special_tokens,
                               reward_texts)

def saved_info(name: str) -> dict:
    """What `ple reward train` recorded in a local directory (its text format; for a gated
    reward, ple.rewards.gated, the gate's intercepts), else {}."""
    info = Path(name) / REWARD_INFO_FILE
    if not info.is_file():
        return {}
    try:
        saved = json.loads(info.read_text(encoding="utf-8"))
        value = saved.get("text_format")
    except (json.JSONDecodeError, AttributeError, OSError) as e:
        raise UserError(f"{info}: not a readable reward-model description "
                        f"({e.__class__.__name__})") from None
    if value not in TEXT_FORMATS:
        raise UserError(f"{info}: `text_format` must be one of {', '.join(TEXT_FORMATS)}, "
                        f"got {value!r}")
    return saved


class ClassifierReward:
    """R(x, y) = the logit of `label` for the text of (x, y) — x + y in the plain format —
    (the single logit of a one-output reward model; the gated sum of a gated one, see
    ple.rewards.gated). For a sentiment classifier, label 1 is the positive class, as the
    paper uses for IMDb. Texts longer than the model's limit
    (`model_max_length`) are cut on the tokenizer's truncation side (the end, unless the
    tokenizer says `left`, as `ple reward train` directories do); how many were cut is
    counted in `truncated` and reported in metrics.jsonl, never silent.

    `text_format` (`plain` or `chat`, see the module docstring) is chosen from the model
    directory unless given.
    """

    def __init__(self, name: str, label: int = 1, batch_size: int = 16,
                 text_format: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
            self._model = AutoModelForSequenceClassification.from_pretrained(
                name, trust_remote_code=False, dtype=torch.float32).eval()
        except OSError as e:
            raise UserError(f"reward `{name}`: cannot load as a sequence-classification "
                            f"model ({str(e).splitlines()[0]})") from None
        num_labels = self._model.config.num_labels
        saved = saved_info(name)
        # A gated reward combines all its outputs (ple.rewards.gated); no label is read.
        self._gate_bias = saved["gate_bias"] if saved.get("combine") == "gated" else None
        if self._gate_bias is None and num_labels > 1 and not 0 <= label < num_labels:
            raise UserError(f"config key `reward_label` = {label}: reward model {name} has "
                            f"{num_labels} labels")
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._model.config.pad_token_id = self._tokenizer.pad_token_id
        self._label = 0 if num_labels == 1 else label
        self._batch_size = batch_size
        if text_format is None:
            text_format = saved.get("text_format") or (
                "chat" if self._tokenizer.chat_template else "plain")
        if text_format not in TEXT_FORMATS:
            raise ValueError(f"text_format must be one of {TEXT_FORMATS}, got {text_format!r}")
        self.text_format = text_format
        self.name = name
        self.truncated = 0

    def to(self, device) -> "ClassifierReward":
        """Score on `device` (the policy's, so a GPU run does not score on the CPU)."""
        self._model.to(device)
        return self

    def texts(self, queries: list[str], responses: list[str]) -> list[str]:
        """Exactly the strings the model scores for these pairs."""
        return reward_texts(self._tokenizer, self.text_format, queries, responses)

    def score(self, queries: list[str], responses: list[str]) -> list[float]:
        import torch  # here, not at the top: `ple --help` should not wait for torch

        texts = self.texts(queries, responses)
        special = adds_special_tokens(self.text_format)
        limit = self._tokenizer.model_max_length
        scores = []
        for i in range(0, len(texts), self._batch_size):
            chunk = texts[i:i + self._batch_size]
            # Measured whole to count what is cut (the count is ple's report, so transformers'
            # warning about the long sequence is not shown).
            lengths = [len(ids) for ids in self._tokenizer(
                chunk, add_special_tokens=special, verbose=False)["input_ids"]]
            self.truncated += sum(n > limit for n in lengths)
            batch = self._tokenizer(chunk, padding=True, truncation=True,
                                    add_special_tokens=special, return_tensors="pt")
            batch = batch.to(self._model.device)
            with torch.no_grad():  # batched, no grad
                logits = self._model(**batch).logits
            logits = logits.float()
            scores.extend((logits[:, self._label] if self._gate_bias is None
                           else gated_reward(logits, self._gate_bias)).tolist())
        return scores
