"""Rollout: turn queries into prompts x and [p, x], and sample y and y' in ONE generate call."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import (LogitsProcessor, LogitsProcessorList,
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from ple.errors import UserError
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


class InverseCDFSampler(LogitsProcessor):
    """Draws each next token itself and hands `generate`, run greedy, a score row that is 0
    at the drawn token and -inf elsewhere.

    Why: `generate`'s own sampler, torch.multinomial, draws one exponential number per
    vocabulary entry, 16 x 49,152 of them a decode step, about 20 ms on a 2-core CPU: as much
    as the bf16 forward of the 135M model. One uniform number per row and a cumulative sum
    draw from the same distribution. Temperature, top-k and top-p are transformers' own
    warpers, applied in generate's order."""

    def __init__(self, temperature: float, top_p: float, top_k: int):
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.warpers(input_ids, scores.float()), dim=-1)
        cdf = probs.cumsum(-1)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
        # right=True: the first token whose cumulative mass exceeds u, never a zero-mass one.
        token = torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1)
        return torch.full_like(scores, -math.inf).scatter_(-1, token, 0.0)


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
    # Greedy over InverseCDFSampler's one-hot rows is sampling; generate's own sampling
    # settings are unset so that nothing is applied twice.
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                         do_sample=False, temperature=None, top_p=None, top_k=None,
                         max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                         logits_processor=LogitsProcessorList(
                             [InverseCDFSampler(temperature, top_p, top_k)]))
    model.train(was_training)
    return cut_at_stop(out[:, ids.shape[1]:].tolist(), stop_ids(model, tokenizer))


def cut_at_stop(rows: list[list[int]], stops: set[int]) -> list[list[int]]:
    """Each row up to and including its first stop token (all of it when it has none)."""
    return [row[:next((i + 1 for i, t in enumerate(row) if t in stops), len(row))]
            for row in rows]


def decode(tokenizer, responses: list[list[int]]) -> list[str]:
    return tokenizer.batch_decode(responses, skip_special_tokens=True)


def length_filter(prompter: Prompter, queries: list[str], limit: int,
                  what: str) -> tuple[list[str], int]:
    """Drop queries whose plain prompt is over `limit` tokens (the paper's rule, 256), and
    count them; no query is ever truncated."""
    kept = [q for q in queries if len(prompter.ids(q)) <= limit]
    if queries and not kept:
        raise UserError(f"{what}: all {len(queries)} queries are longer than "
                        f"max_prompt_tokens = {limit} tokens")
    return kept, len(queries) - len(kept)


def check_context(prompter: Prompter, queries: list[str], max_new_tokens: int,
                  context: int | None) -> None:
    """Refuse a principle so long that principle-guided prompts leave no room to answer."""
    longest = max(len(prompter.ids(q, guided=True)) for q in queries)
    if context and longest + max_new_tokens > context:
        raise UserError(f"principle: the longest principle-guided prompt is {longest} "
                        f"tokens; with max_new_tokens = {max_new_tokens} it exceeds "
                        f"the model's context of {context} tokens")
