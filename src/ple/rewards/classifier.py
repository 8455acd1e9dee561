"""A Hugging Face sequence-classification model as R(x, y), from the hub or a local path."""

from __future__ import annotations

import torch

from ple.errors import UserError


class ClassifierReward:
    """R(x, y) = the logit of `label` for the text x + y (the single logit of a one-output
    reward model). For a sentiment classifier, label 1 is the positive class, as the paper
    uses for IMDb. Texts longer than the model's limit are cut at the end; how many were cut
    is counted in `truncated` and reported in metrics.jsonl, never silent.
    """

    def __init__(self, name: str, label: int = 1, batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
            self._model = AutoModelForSequenceClassification.from_pretrained(
                name, trust_remote_code=False).eval()
        except OSError as e:
            raise UserError(f"reward `{name}`: cannot load as a sequence-classification "
                            f"model ({str(e).splitlines()[0]})") from None
        num_labels = self._model.config.num_labels
        if num_labels > 1 and not 0 <= label < num_labels:
            raise UserError(f"config key `reward_label` = {label}: reward model {name} has "
                            f"{num_labels} labels")
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._model.config.pad_token_id = self._tokenizer.pad_token_id
        self._label = 0 if num_labels == 1 else label
        self._batch_size = batch_size
        self.name = name
        self.truncated = 0

    @torch.no_grad()
    def score(self, queries: list[str], responses: list[str]) -> list[float]:
        texts = [q + r for q, r in zip(queries, responses)]
        limit = self._tokenizer.model_max_length
        scores = []
        for i in range(0, len(texts), self._batch_size):
            chunk = texts[i:i + self._batch_size]
            lengths = [len(ids) for ids in self._tokenizer(chunk)["input_ids"]]
            self.truncated += sum(n > limit for n in lengths)
            batch = self._tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
            batch = batch.to(self._model.device)
            logits = self._model(**batch).logits
            scores.extend(logits[:, self._label].float().tolist())
        return scores
