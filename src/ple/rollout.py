"""Rollout: turn queries into prompts x and [p, x], and sample y and y' in ONE generate call."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ple.tasks import Task, with_principle


@dataclass
class Prompter:
    """Builds the token ids of x (plain) and [p, x] (principle-guided) for one task.

    `info` holds what dataset rows said about their queries (ple.inputs.QueryInfo): a
    conversation to format instead of the query text, and a principle of the row's own.
    """

    tokenizer: object
    task: Task
    principle: str
    use_chat: bool
    info: dict = field(default_factory=dict)

    def text(self, query: str, guided: bool) -> str:
        row = self.info.get(query)
        principle = ((row and row.principle) or self.principle) if guided else None
        if self.use_chat:
            if row is not None and row.messages is not None:
                messages = with_principle(list(row.messages), principle)
            else:
                messages = self.task.messages(query, principle)
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
        return self.task.raw_prompt(query, principle)

    def ids(self, query: str, guided: bool = False) -> list[int]:
        # A chat template already holds its special tokens; raw text gets the tokenizer's.
        return self.tokenizer(self.text(query, guided),
                              add_special_tokens=not self.use_chat)["input_ids"]


def stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    return ids | {tokenizer.eos_token_id}


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


@torch.no_grad()
def sample(model, tokenizer, prompts: list[list[int]], max_new_tokens: int,
           temperature: float, top_p: float, top_k: int) -> list[list[int]]:
    """Sample one response per prompt in a single batched `generate` call.

    Each response is cut after its first end-of-sequence token, which is kept: training on it
    teaches the model where to stop.
    """
    was_training = model.training
    model.eval()
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                         do_sample=True, max_new_tokens=max_new_tokens,
                         temperature=temperature, top_p=top_p, top_k=top_k,
                         pad_token_id=tokenizer.pad_token_id)
    model.train(was_training)
    return cut_at_stop(out[:, ids.shape[1]:].tolist(), stop_ids(model, tokenizer))


def cut_at_stop(rows: list[list[int]], stops: set[int]) -> list[list[int]]:
    """Each row up to and including its first stop token (all of it when it has none)."""
    return [row[:next((i + 1 for i, t in enumerate(row) if t in stops), len(row))]
            for row in rows]


def decode(tokenizer, responses: list[list[int]]) -> list[str]:
    return tokenizer.batch_decode(responses, skip_special_tokens=True)
