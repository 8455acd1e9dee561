"""What a trainer is given, made uniform: the model (a name or a loaded model) and the
training prompts (a dataset of rows, as TRL's trainers take them).

A row has a `prompt`: the task's query text (an IMDb opening, an HH dialogue, a TL;DR post)
or a conversation (a list of {"role", "content"} messages). An optional `principle` column
replaces the config's principle for that row; every other column is handed to reward
functions as a keyword argument, as TRL does. Inside ple a query is identified by its text:
a conversation's text is its HH-style transcript ("\\n\\nHuman: ...\\n\\nAssistant:"), which is
also what reward models read for x.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ple.errors import UserError

ROLES = {"user": "Human", "assistant": "Assistant"}


@dataclass(frozen=True)
class QueryInfo:
    """What a row says about its query besides the text."""

    messages: tuple | None = None        # the conversation, when the prompt was one
    principle: str | None = None         # this row's principle prompt
    columns: dict = field(default_factory=dict)  # the other columns, for reward functions


def transcript(messages: list[dict], where: str) -> str:
    """A conversation as HH-RLHF writes it, open for the assistant's answer. System
    messages are kept for the chat template but are not part of the transcript."""
    parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) \
                or message.get("role") not in (*ROLES, "system"):
            raise UserError(f"{where}: message {i + 1} must be {{'role': 'user' | 'assistant' "
                            f"| 'system', 'content': str}}, got {message!r}"[:300])
        if message["role"] != "system":
            parts.append(f"\n\n{ROLES[message['role']]}: {message['content'].strip()}")
    if not parts or messages[-1]["role"] != "user":
        raise UserError(f"{where}: a conversational prompt must end with a user message")
    return "".join(parts) + "\n\nAssistant:"


def dataset_queries(dataset, what: str) -> tuple[list[str], dict[str, QueryInfo]]:
    """The query texts of a `datasets.Dataset` or list of dicts, in order, and what the rows
    say about each. `what` names the dataset in messages (e.g. "train_dataset")."""
    rows = list(dataset)
    if not rows:
        raise UserError(f"{what}: no rows")
    queries, info = [], {}
    for number, row in enumerate(rows, start=1):
        where = f"{what} row {number}"
        if not isinstance(row, dict) or "prompt" not in row:
            raise UserError(f"{where}: needs a `prompt` column (text or a list of messages)")
        prompt, principle = row["prompt"], row.get("principle")
        if isinstance(prompt, str):
            if not prompt.strip():
                raise UserError(f"{where}: `prompt` is empty")
            query, messages = prompt, None
        elif isinstance(prompt, list):
            query, messages = transcript(prompt, where), tuple(dict(m) for m in prompt)
        else:
            raise UserError(f"{where}: `prompt` must be a string or a list of messages, got "
                            f"{type(prompt).__name__}")
        if principle is not None and not isinstance(principle, str):
            raise UserError(f"{where}: `principle` must be a string")
        columns = {k: v for k, v in row.items() if k not in ("prompt", "principle")}
        found = QueryInfo(messages, principle, columns)
        if query in info and info[query] != found:
            raise UserError(f"{where}: repeats the prompt of an earlier row with other "
                            f"columns; a prompt must mean one thing")
        info[query] = found
        queries.append(query)
    return queries, info


def resolve_model(model, processing_class, seed: int, init_kwargs: dict | None = None):
    """(model, tokenizer, name) from what a trainer was given: a name as `--model` takes it
    (hub id, directory, .gguf, `default`, `tiny`), loaded with from_pretrained's
    `init_kwargs` (ple.models.init_kwargs), or a loaded causal LM with its tokenizer
    (`processing_class`; else the one saved beside the model's weights). `name` is what
    config.yaml records, so that `ple eval` and `--resume` can load the same model."""
    from ple.models import load_policy

    if isinstance(model, str):
        loaded, tokenizer = load_policy(model, seed, init_kwargs)
        return loaded, processing_class or tokenizer, model
    name = getattr(model, "name_or_path", "") or ""
    if processing_class is None:
        if not name:
            raise UserError("model: a loaded model with no name_or_path needs its tokenizer "
                            "as processing_class")
        from ple.models import load_tokenizer

        processing_class = load_tokenizer(name)
    if processing_class.pad_token is None:
        processing_class.pad_token = processing_class.eos_token
    processing_class.padding_side = "left"
    model.generation_config.pad_token_id = processing_class.pad_token_id
    return model, processing_class, name or "(a model given in Python, no name_or_path)"
