"""The HH-RLHF transcript format: "\\n\\nHuman: ...\\n\\nAssistant: ..." turns.

Apart from the tasks, because what a trained reward model is depends on it (it splits the
preference pairs; ple.rewards.builtin keys cached reward models by this module's code).
"""

from __future__ import annotations

import re

from ple.data_files import Record
from ple.errors import UserError

ASSISTANT_TAG = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def hh_turns(dialogue: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b ...' -> chat messages; an empty last Assistant turn
    (the query's open slot) is dropped. Text with no turn markers is one user turn."""
    parts = _TURN.split(dialogue)
    if len(parts) == 1:
        return [{"role": "user", "content": dialogue.strip()}]
    messages = []
    for role, text in zip(parts[1::2], parts[2::2]):
        text = text.strip()
        if text or role == "Human":
            messages.append({"role": "user" if role == "Human" else "assistant",
                             "content": text})
    return messages


def split_hh(transcript: str, record: Record) -> tuple[str, str]:
    """An HH transcript -> (dialogue up to and including the last 'Assistant:', response)."""
    cut = transcript.rfind(ASSISTANT_TAG)
    if cut < 0:
        raise UserError(f"{record.where}: HH transcript has no '\\n\\nAssistant:' turn")
    cut += len(ASSISTANT_TAG)
    return transcript[:cut], transcript[cut:]
