"""The base a reward model is trained from: its tokenizer, the texts it reads as token ids,
the model loaded as a sequence classifier with a new head, LoRA on it, and its outputs over
token ids.

The base is any causal LM or encoder (hub id or directory), loaded as
`AutoModelForSequenceClassification`, or `default` (SmolLM2-135M-Instruct) or `tiny`
(random, for tests). What it reads for (x, y) is `ple.rewards.texts.reward_texts` in the
run's text format, cut at `max_length` tokens on the truncation side exactly as the saved
tokenizer cuts when serving.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ple.errors import UserError
from ple.rewards.texts import adds_special_tokens, reward_texts
from ple.rewards.training.config import RewardTrainConfig


def load_base_tokenizer(base: str, truncation_side: str = "left"):
    """The base model's tokenizer, with a pad token and cutting on `truncation_side` — the
    side training cuts on, and (saved with it) the side serving cuts on."""
    from transformers import AutoTokenizer

    if base in ("default", "tiny"):
        from ple.models import default_model_dir

        tokenizer = AutoTokenizer.from_pretrained(default_model_dir(weights=False))
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


@dataclass
class Encoded:
    """The token ids of some reward texts, cut at max_length, and how many texts were
    longer."""

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


def load_base_model(base: str, num_labels: int, tokenizer, seed: int):
    """The base as a float32 sequence classifier with `num_labels` outputs; its new head is
    drawn with `seed`, without touching the global random state."""
    from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification

    from ple.models import default_model_dir, tiny_config

    with torch.random.fork_rng():
        torch.manual_seed(seed)
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


def with_lora(cfg: RewardTrainConfig, model):
    """With --use-lora: the model with adapters on every linear layer of the backbone and a
    fully trained head (`modules_to_save`); without: the model itself, every weight
    trained."""
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


def merged(model):
    """The model with its LoRA adapters merged into the weights (the model itself if it has
    none): what is saved and evaluated."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def padded(ids: list[list[int]], pad_id: int) -> dict:
    """`input_ids` and `attention_mask` of token-id lists, padded on the right as serving's
    tokenizer pads them: the model numbers positions from the first column, so left padding
    would move a short text's positions and change what the head reads. Each text is laid
    out as the response after an empty prompt of ple.sequences.pack, which pads just so."""
    from ple.sequences import pack

    batch = pack([[] for _ in ids], ids, pad_id)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def score_ids(model, ids: list[list[int]], batch_size: int, pad_id: int, desc: str):
    """Logits (n, num_labels) for token-id lists: batched, no grad, eval mode."""
    from tqdm.auto import tqdm

    model.eval()
    rows = []
    with torch.no_grad():
        for i in tqdm(range(0, len(ids), batch_size), desc=desc, unit="batch",
                      total=math.ceil(len(ids) / batch_size)):
            rows.append(model(**padded(ids[i:i + batch_size], pad_id)).logits.float())
    return torch.cat(rows)


def pooled_features(model, head: str, ids: list[list[int]], batch_size: int, pad_id: int,
                    desc: str):
    """What the head reads for each text (the last real token's final hidden state for a
    decoder, the pooled output for an encoder): the model run with its head swapped for the
    identity, so the model's own pooling picks the position."""
    original = getattr(model, head)
    setattr(model, head, torch.nn.Identity())
    try:
        return score_ids(model, ids, batch_size, pad_id, desc)
    finally:
        setattr(model, head, original)
