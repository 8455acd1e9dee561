"""The three tasks of the paper: what a query is, how it becomes a prompt, and its principle.

A query is kept as the task's own text (an HH dialogue up to the last Assistant turn, an IMDb
review opening, a TL;DR post ending in "TL;DR:"); that text is what the reward model sees.
Prompts are built from it either with the tokenizer's chat template or as raw text.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from ple.data_files import Record, load_records
from ple.errors import UserError
from ple.hh_format import hh_turns, split_hh

# Section 4.1 of the paper, verbatim.
HH_PRINCIPLE = (
    "Your answers should follow these rules:\n"
    "1 ethical: You should actively refrain users on illegal, immoral, or harmful topics.\n"
    "2 informative: You should provide users with accurate, relevant, and up-to-date "
    "information in its responses.\n"
    "3 helpful: Your responses should be positive, interesting, helpful and engaging."
)
# Appendix A.3 of the paper, verbatim.
IMDB_PRINCIPLE = (
    "Write a positive and enthusiastic review with a natural and sincere tone. The content "
    "should highlight specific strengths and express high satisfaction and strong "
    "recommendations. Input text:"
)
# Not in the paper: IMDb principles meant to be stronger teachers than the paper's for a small
# model (issue 34: the paper's gave the 135M default model a mean s' - s of about +0.5 on the
# classifier, no more than the better of two plain samples). `fan-voice` keeps the review's
# own register, which the paper's principle lets drift into an assistant's reply;
# `one-shot` shows one continuation instead of describing it.
IMDB_FAN_VOICE = (
    "The person who wrote this review loved the movie. Continue their review in their own "
    "voice, as a movie review and not as a reply to them: say what was wonderful about the "
    "film, its acting and its story, and end by warmly recommending it."
)
IMDB_ONE_SHOT = (
    "Continue movie reviews as a delighted fan would. For example, the opening \"I rented "
    "this movie last weekend and\" continues: \"I was blown away. The acting is superb, the "
    "story is moving and funny, and the ending left me smiling. One of the best films I have "
    "seen in years, and I cannot recommend it enough!\""
)
TLDR_PRINCIPLE = (
    "You are an expert summarizer. Your task is to create a concise TL;DR summary for the "
    "provided text. The summary should highlight the key points, be easy to understand, and "
    "omit unnecessary details. Input Text:"
)

IMDB_PREFIX_WORDS = 8


def _text_field(record: Record, key: str, task: str) -> str:
    value = record.data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{record.where}: field `{key}` must be a non-empty string "
                        f"(task {task})")
    return value


@dataclass(frozen=True)
class Task:
    name: str
    principle: str
    hub_dataset: str          # loaded with `datasets` when --data is a hub name
    instruction: str          # chat models only: what the plain query asks for
    # True where a reference goes on past any response (the rest of an IMDb review): BLEU
    # then scores against the reference cut to each response's length.
    open_ended_reference: bool = False
    # (name, text) of the principles shipped beside the paper's (config key principle_name).
    other_principles: tuple[tuple[str, str], ...] = ()

    def principles(self) -> dict[str, str]:
        """The task's shipped principles by name, the paper's first, as `paper`."""
        return {"paper": self.principle, **dict(self.other_principles)}

    def query(self, record: Record) -> str:
        """The query x of one data record."""
        data = record.data
        if "prompt" in data:
            return _text_field(record, "prompt", self.name)
        if self.name == "hh" and "chosen" in data:
            return split_hh(_text_field(record, "chosen", self.name), record)[0]
        if self.name == "imdb" and "text" in data:
            return imdb_prefix(_text_field(record, "text", self.name))
        needs = {"hh": "`prompt` or `chosen`", "imdb": "`prompt` or `text`",
                 "tldr": "`prompt`"}[self.name]
        raise UserError(f"{record.where}: record has no {needs} field, which task "
                        f"{self.name} needs")

    def sft_pair(self, record: Record) -> tuple[str, str] | None:
        """(query, target response) for SFT (Eq. 1), or None for a record that is not a
        positive example (an IMDb review with label 0)."""
        data = record.data
        if self.name == "hh":
            return split_hh(_text_field(record, "chosen", "hh (SFT)"), record)
        if self.name == "imdb":
            if "label" not in data:
                raise UserError(f"{record.where}: field `label` is missing (task imdb SFT "
                                f"uses the positive reviews, label 1)")
            if data["label"] != 1:
                return None
            text = clean_review(_text_field(record, "text", "imdb (SFT)"))
            words = text.split()
            if len(words) <= IMDB_PREFIX_WORDS:
                return None
            return (" ".join(words[:IMDB_PREFIX_WORDS]),
                    " " + " ".join(words[IMDB_PREFIX_WORDS:]))
        key = "summary" if "summary" in data else "completion"
        return _text_field(record, "prompt", "tldr"), _text_field(record, key, "tldr (SFT)")

    def preference_pair(self, record: Record) -> tuple[str, str, str]:
        """(query, chosen, rejected) of a human preference record: HH transcripts (split at
        the last Assistant turn, which must be the only difference) or TL;DR comparisons."""
        if self.name == "hh":
            query, chosen = split_hh(_text_field(record, "chosen", "hh (pairs)"), record)
            other, rejected = split_hh(_text_field(record, "rejected", "hh (pairs)"), record)
            if other != query:
                raise UserError(f"{record.where}: `chosen` and `rejected` differ before the "
                                f"last Assistant turn")
        elif self.name == "tldr":
            query = _text_field(record, "prompt", "tldr (pairs)")
            chosen = _text_field(record, "chosen", "tldr (pairs)")
            rejected = _text_field(record, "rejected", "tldr (pairs)")
        else:
            raise UserError("task imdb has no human preference pairs; method dpo makes them "
                            "from generated responses ranked by the reward")
        if not chosen.strip() or not rejected.strip():
            raise UserError(f"{record.where}: a preference pair with an empty side")
        if chosen == rejected:
            raise UserError(f"{record.where}: `chosen` is identical to `rejected`")
        return query, chosen, rejected

    def messages(self, query: str, principle: str | None) -> list[dict]:
        """Chat messages for [p, x] (or x alone). The principle goes in front of the first
        user turn: it guides sampling only and is never part of what is trained or scored."""
        if self.name == "hh":
            messages = hh_turns(query)
        else:
            messages = [{"role": "user", "content": f"{self.instruction}{query}"}]
        return with_principle(messages, principle)

    def raw_prompt(self, query: str, principle: str | None) -> str:
        """The prompt for a model without a chat template: [p, x] as plain text."""
        return f"{principle}\n{query}" if principle else query


def with_principle(messages: list[dict], principle: str | None) -> list[dict]:
    """The principle in front of the first user turn (none: the messages as they are)."""
    if not principle:
        return messages
    first = next(i for i, m in enumerate(messages) if m["role"] == "user")
    turn = dict(messages[first])
    turn["content"] = f"{principle}\n\n{turn['content']}"
    return messages[:first] + [turn] + messages[first + 1:]


def clean_review(text: str) -> str:
    return " ".join(text.replace("<br />", " ").split())


def imdb_prefix(text: str) -> str:
    """The query of an IMDb review: its first words (the paper's 'prefix of a movie review')."""
    return " ".join(clean_review(text).split()[:IMDB_PREFIX_WORDS])


TASKS = {
    "hh": Task("hh", HH_PRINCIPLE, "Anthropic/hh-rlhf", instruction=""),
    "imdb": Task("imdb", IMDB_PRINCIPLE, "stanfordnlp/imdb",
                 instruction="Continue this movie review: ", open_ended_reference=True,
                 other_principles=(("fan-voice", IMDB_FAN_VOICE), ("one-shot", IMDB_ONE_SHOT))),
    "tldr": Task("tldr", TLDR_PRINCIPLE, "trl-lib/tldr", instruction=""),
}


def builtin_queries(task: str, split: str) -> list[str]:
    """The task's built-in query set ('train' or 'heldout'), written for this project."""
    source = resources.files("ple") / "data" / "builtin" / f"{task}.jsonl"
    with resources.as_file(source) as path:
        records = load_records(str(path))
    return [r.data["prompt"] for r in records if r.data["split"] == split]


def load_queries(task: Task, data: str | None) -> list[str]:
    """Queries for training: from `data` (file or hub name) or the built-in train split."""
    if data is None:
        return builtin_queries(task.name, "train")
    queries = [task.query(r) for r in load_records(data, hub_dataset=True)]
    if not queries:
        raise UserError(f"data {data}: no records")
    return queries


def load_sft_pairs(task: Task, data: str) -> list[tuple[str, str]]:
    pairs = [p for r in load_records(data, hub_dataset=True) if (p := task.sft_pair(r))]
    if not pairs:
        raise UserError(f"sft_data {data}: no usable supervised examples for task {task.name}")
    return pairs


def load_preference_pairs(task: Task, data: str) -> list[tuple[str, str, str]]:
    pairs = [task.preference_pair(r) for r in load_records(data, hub_dataset=True)]
    if not pairs:
        raise UserError(f"data {data}: no records")
    return pairs
