"""What a reward model reads for a pair (x, y): its text format. Training (`ple reward train`)
and serving (ple.rewards.classifier) both call this module, so they cannot drift apart. A
change to the texts changes what the built-in rewards learn: bump
ple.rewards.builtin.RECIPE_VERSION with it.

- `plain`: x + y, the two strings joined, with a space where neither has one at the seam
  (the IMDb and TL;DR classifiers of the paper);
- `chat`: the conversation formatted with the reward model's own tokenizer and chat template
  (the RM-Gemma style): `hh_turns(x)` + an assistant turn holding y, stripped.
"""

from __future__ import annotations

from ple.hh_format import hh_turns

TEXT_FORMATS = ("plain", "chat")
REWARD_INFO_FILE = "ple_reward.json"  # written by `ple reward train` (ple.rewards.training.save)


def reward_texts(tokenizer, text_format: str, queries: list[str],
                 responses: list[str]) -> list[str]:
    """The texts a reward model reads for the pairs (x, y), in `text_format`. Training
    (`ple reward train`) and serving both call this, so they cannot drift apart."""
    if text_format == "plain":
        return [join_plain(q, r) for q, r in zip(queries, responses)]
    return [tokenizer.apply_chat_template(
                hh_turns(q) + [{"role": "assistant", "content": r.strip()}], tokenize=False)
            for q, r in zip(queries, responses)]


def join_plain(query: str, response: str) -> str:
    """x + y as one text. A sampled response usually starts without a space (its first token
    follows a chat template's assistant tag, not the query), which would glue words
    together ("...opens withThe", "Assistant:Sure"): then a space is put between them."""
    if query and response and not query[-1].isspace() and not response[0].isspace():
        return f"{query} {response}"
    return query + response


def adds_special_tokens(text_format: str) -> bool:
    """A chat-formatted text already holds the template's special tokens (Gemma's <bos>):
    tokenizing it must not add them a second time."""
    return text_format == "plain"
