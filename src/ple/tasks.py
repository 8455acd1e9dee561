"""The three tasks of the paper: what a query is, how it becomes a prompt, and its principle.

Each task is one object, a subclass of Task, found by name in TASKS: what differs between
tasks is asked of the object, not decided by its name. A query is kept as the task's own
text (an HH dialogue up to the last Assistant turn, an IMDb review opening, a TL;DR post
ending in "TL;DR:"); that text is what the reward model sees. Prompts are built from it
either with the tokenizer's chat template or as raw text.
"""

from __future__ import annotations

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


class Task:
    """One task: its principles, and how its records become queries, SFT pairs and preference
    pairs, and its queries chat messages.

    What this class does is the plainest task's: a record in TRL's formats (`prompt`, with
    `completion` or with `chosen` and `rejected`), its query the one user message. A task is
    a subclass that sets the attributes and overrides what it does otherwise, and one entry
    in TASKS.
    """

    name: str
    principle: str            # the paper's principle for the task
    hub_dataset: str          # the task's dataset on the Hugging Face hub
    instruction = ""          # chat models only: what the plain query asks for
    # True where a reference goes on past any response (the rest of an IMDb review): BLEU
    # then scores against the reference cut to each response's length.
    open_ended_reference = False
    # (name, text) of the principles shipped beside the paper's (config key principle_name).
    other_principles: tuple[tuple[str, str], ...] = ()
    # Where a record without `prompt` holds its query, in the task's own format; query_of
    # reads the query out of that field's text.
    query_field: str | None = None
    # False where there are no human preference pairs (IMDb): a method that learns from
    # pairs then samples its own from queries.
    has_preference_pairs = True

    def principles(self) -> dict[str, str]:
        """The task's shipped principles by name, the paper's first, as `paper`."""
        return {"paper": self.principle, **dict(self.other_principles)}

    def query(self, record: Record) -> str:
        """The query x of one data record: its `prompt`, else the query in its
        `query_field`."""
        data = record.data
        if "prompt" in data:
            return _text_field(record, "prompt", self.name)
        if self.query_field is not None and self.query_field in data:
            return self.query_of(_text_field(record, self.query_field, self.name), record)
        needs = " or ".join(f"`{key}`" for key in ("prompt", self.query_field) if key)
        raise UserError(f"{record.where}: record has no {needs} field, which task "
                        f"{self.name} needs")

    def query_of(self, text: str, record: Record) -> str:
        """The query in `text`, the `query_field` of `record`; a task that sets
        `query_field` says how."""
        raise NotImplementedError(f"task {self.name} sets query_field but not query_of")

    def sft_pair(self, record: Record) -> tuple[str, str] | None:
        """(query, target response) for SFT (Eq. 1), or None for a record that is not a
        positive example (an IMDb review with label 0); here the record's `prompt` and
        `completion`."""
        return (_text_field(record, "prompt", self.name),
                _text_field(record, "completion", f"{self.name} (SFT)"))

    def preference_pair(self, record: Record) -> tuple[str, str, str]:
        """(query, chosen, rejected) of a human preference record (`preference_sides`), both
        sides non-empty and different."""
        if not self.has_preference_pairs:
            raise UserError(f"task {self.name} has no human preference pairs; method dpo "
                            f"makes them from generated responses ranked by the reward")
        query, chosen, rejected = self.preference_sides(record)
        if not chosen.strip() or not rejected.strip():
            raise UserError(f"{record.where}: a preference pair with an empty side")
        if chosen == rejected:
            raise UserError(f"{record.where}: `chosen` is identical to `rejected`")
        return query, chosen, rejected

    def preference_sides(self, record: Record) -> tuple[str, str, str]:
        """The record's `prompt`, `chosen` and `rejected`, as they are."""
        what = f"{self.name} (pairs)"
        return (_text_field(record, "prompt", what), _text_field(record, "chosen", what),
                _text_field(record, "rejected", what))

    def messages(self, query: str, principle: str | None) -> list[dict]:
        """Chat messages for [p, x] (or x alone). The principle goes in front of the first
        user turn: it guides sampling only and is never part of what is trained or scored."""
        return with_principle([{"role": "user", "content": f"{self.instruction}{query}"}],
                              principle)

    def raw_prompt(self, query: str, principle: str | None) -> str:
        """The prompt for a model without a chat template: [p, x] as plain text."""
        return f"{principle}\n{query}" if principle else query


class HHTask(Task):
    """Anthropic's HH-RLHF: a query is a dialogue up to its last Assistant turn, and a
    record a whole transcript (`chosen`, `rejected`) split there."""

    name = "hh"
    principle = HH_PRINCIPLE
    hub_dataset = "Anthropic/hh-rlhf"
    query_field = "chosen"

    def query_of(self, text: str, record: Record) -> str:
        return split_hh(text, record)[0]

    def sft_pair(self, record: Record) -> tuple[str, str]:
        """The `chosen` transcript split at its last Assistant turn."""
        return split_hh(_text_field(record, "chosen", f"{self.name} (SFT)"), record)

    def preference_sides(self, record: Record) -> tuple[str, str, str]:
        """Both transcripts split at the last Assistant turn, which must be the only
        difference."""
        what = f"{self.name} (pairs)"
        query, chosen = split_hh(_text_field(record, "chosen", what), record)
        other, rejected = split_hh(_text_field(record, "rejected", what), record)
        if other != query:
            raise UserError(f"{record.where}: `chosen` and `rejected` differ before the "
                            f"last Assistant turn")
        return query, chosen, rejected

    def messages(self, query: str, principle: str | None) -> list[dict]:
        """The dialogue's own turns, the principle in front of the first user turn."""
        return with_principle(hh_turns(query), principle)


class IMDbTask(Task):
    """IMDb reviews: a query is a review's first words, continued by the policy."""

    name = "imdb"
    principle = IMDB_PRINCIPLE
    hub_dataset = "stanfordnlp/imdb"
    instruction = "Continue this movie review: "
    open_ended_reference = True
    other_principles = (("fan-voice", IMDB_FAN_VOICE), ("one-shot", IMDB_ONE_SHOT))
    query_field = "text"
    has_preference_pairs = False

    def query_of(self, text: str, record: Record) -> str:
        return imdb_prefix(text)

    def sft_pair(self, record: Record) -> tuple[str, str] | None:
        """A positive review (label 1) split after its first words; None for a negative one
        or one too short to continue."""
        data = record.data
        if "label" not in data:
            raise UserError(f"{record.where}: field `label` is missing (task imdb SFT "
                            f"uses the positive reviews, label 1)")
        if data["label"] != 1:
            return None
        words = clean_review(_text_field(record, "text", f"{self.name} (SFT)")).split()
        if len(words) <= IMDB_PREFIX_WORDS:
            return None
        return (" ".join(words[:IMDB_PREFIX_WORDS]),
                " " + " ".join(words[IMDB_PREFIX_WORDS:]))


class TLDRTask(Task):
    """Reddit TL;DR: a query is a post ending in "TL;DR:", a response its summary."""

    name = "tldr"
    principle = TLDR_PRINCIPLE
    hub_dataset = "trl-lib/tldr"

    def sft_pair(self, record: Record) -> tuple[str, str]:
        """The post and its reference summary: `summary` in ple's data folder, `completion`
        in trl-lib/tldr."""
        key = "summary" if "summary" in record.data else "completion"
        return (_text_field(record, "prompt", self.name),
                _text_field(record, key, f"{self.name} (SFT)"))


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


TASKS = {task.name: task for task in (HHTask(), IMDbTask(), TLDRTask())}


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
