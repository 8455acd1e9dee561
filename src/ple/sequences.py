"""Score responses under the policy: log pi(y^j | y^<j, x) for response tokens only.

Each sequence is laid out as [left padding, prompt x, response y, right padding], so every
response starts at the same column. The model then runs its LM head only over the response
window (`logits_to_keep`), and prompt and padding tokens never enter a loss.
"""

from __future__ import annotations

import torch

from ple.losses import token_logprobs


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> dict:
    """Tensors for a batch of (prompt, response) token-id lists."""
    p_width = max(len(p) for p in prompts)
    r_width = max(len(r) for r in responses)
    n = len(prompts)
    ids = torch.full((n, p_width + r_width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response_mask = torch.zeros((n, r_width), dtype=torch.float32)
    for row, (p, r) in enumerate(zip(prompts, responses)):
        ids[row, p_width - len(p):p_width] = torch.tensor(p, dtype=torch.long)
        ids[row, p_width:p_width + len(r)] = torch.tensor(r, dtype=torch.long)
        attention[row, p_width - len(p):p_width + len(r)] = 1
        response_mask[row, :len(r)] = 1.0
    return {"input_ids": ids, "attention_mask": attention,
            "labels": ids[:, p_width:], "response_mask": response_mask}


def response_window(batch: dict, device) -> torch.Tensor:
    """The columns whose logits predict the response tokens (and the one after the last),
    as indices: the LM head then gets a contiguous gather of them. Given as a count instead,
    transformers slices the hidden states, and torch.matmul, for a frozen LM head outside
    autograd, multiplies that non-contiguous slice by copying the head once per sequence
    (1.8 GB for 16 sequences of the default model)."""
    width, r_width = batch["input_ids"].shape[1], batch["labels"].shape[1]
    return torch.arange(width - r_width - 1, width, device=device)


def response_token_logprobs(model, batch: dict) -> torch.Tensor:
    """[N, R] log-probs of the response tokens (0 at padding), with gradients."""
    device = next(model.parameters()).device
    attention = batch["attention_mask"].to(device)
    # Positions count real tokens only, so left padding does not shift them.
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=attention,
                position_ids=positions, logits_to_keep=response_window(batch, device),
                use_cache=False)
    # Logits at column k predict the token at column k + 1: drop the last one.
    logits = out.logits[:, :-1].float()
    return token_logprobs(logits, batch["labels"].to(device),
                          batch["response_mask"].to(device))


def response_logprobs_and_hidden(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """As `response_token_logprobs`, and from the same forward pass the last hidden state
    (the LM head's input) at the positions that predict each response token: [N, R, H].

    For a value head (PPO): the state at column k is the context x, y^<k before y^k is
    generated, so V(s_k) sits beside log pi(y^k | x, y^<k).
    """
    device = next(model.parameters()).device
    attention = batch["attention_mask"].to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    r_width = batch["labels"].shape[1]
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=attention,
                position_ids=positions, logits_to_keep=response_window(batch, device),
                use_cache=False, output_hidden_states=True)
    logits = out.logits[:, :-1].float()
    hidden = out.hidden_states[-1][:, -(r_width + 1):-1]
    return (token_logprobs(logits, batch["labels"].to(device),
                           batch["response_mask"].to(device)), hidden)
