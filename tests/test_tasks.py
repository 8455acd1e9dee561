"""Tests for ple.tasks: principles, HH splitting, queries, SFT pairs, prompts, query sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ple.data_files import Record
from ple.errors import UserError
from ple.hh_format import hh_turns, split_hh
from ple.tasks import (
    HH_PRINCIPLE,
    IMDB_PRINCIPLE,
    TASKS,
    TLDR_PRINCIPLE,
    builtin_queries,
    load_queries,
    load_sft_pairs,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TWO_TURNS = ("\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?"
             "\n\nHuman: Tell me a joke.\n\nAssistant: Why did the chicken cross the road?")
TWO_TURNS_PROMPT = ("\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?"
                    "\n\nHuman: Tell me a joke.\n\nAssistant:")
TWO_TURNS_RESPONSE = " Why did the chicken cross the road?"


def rec(data: dict, where: str = "data.jsonl:7") -> Record:
    return Record(data, where)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# --- principles (paper text, verbatim) ---------------------------------------------------

def test_hh_principle_verbatim():
    assert HH_PRINCIPLE == (
        "Your answers should follow these rules:\n"
        "1 ethical: You should actively refrain users on illegal, immoral, or harmful topics.\n"
        "2 informative: You should provide users with accurate, relevant, and up-to-date "
        "information in its responses.\n"
        "3 helpful: Your responses should be positive, interesting, helpful and engaging.")
    assert ("1 ethical: You should actively refrain users on illegal, immoral, or harmful "
            "topics.") in HH_PRINCIPLE
    assert HH_PRINCIPLE.startswith("Your answers should follow these rules:\n")


def test_imdb_principle_verbatim():
    assert IMDB_PRINCIPLE.startswith(
        "Write a positive and enthusiastic review with a natural and sincere tone.")
    assert ("The content should highlight specific strengths and express high satisfaction "
            "and strong recommendations.") in IMDB_PRINCIPLE
    assert IMDB_PRINCIPLE.endswith("recommendations. Input text:")


def test_tldr_principle_verbatim():
    assert TLDR_PRINCIPLE.startswith(
        "You are an expert summarizer. Your task is to create a concise TL;DR summary for the "
        "provided text.")
    assert ("The summary should highlight the key points, be easy to understand, and omit "
            "unnecessary details.") in TLDR_PRINCIPLE
    assert TLDR_PRINCIPLE.endswith("unnecessary details. Input Text:")


def test_tasks_carry_their_principles():
    assert TASKS["hh"].principle is HH_PRINCIPLE
    assert TASKS["imdb"].principle is IMDB_PRINCIPLE
    assert TASKS["tldr"].principle is TLDR_PRINCIPLE
    assert {name: t.name for name, t in TASKS.items()} == {
        "hh": "hh", "imdb": "imdb", "tldr": "tldr"}


# --- HH transcripts ----------------------------------------------------------------------

def test_split_hh_two_turns():
    prompt, response = split_hh(TWO_TURNS, rec({}))
    assert prompt == TWO_TURNS_PROMPT
    assert response == TWO_TURNS_RESPONSE
    assert prompt + response == TWO_TURNS


def test_split_hh_without_assistant_turn_names_record():
    with pytest.raises(UserError) as err:
        split_hh("\n\nHuman: only a question", rec({}, "x.jsonl:12"))
    assert "x.jsonl:12" in str(err.value)
    assert "Assistant" in str(err.value)


def test_hh_turns_maps_roles_and_drops_open_slot():
    assert hh_turns(TWO_TURNS_PROMPT) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]


def test_hh_turns_keeps_filled_last_assistant_turn():
    assert hh_turns(TWO_TURNS) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
    ]


# --- Task.query --------------------------------------------------------------------------

def test_hh_query_from_prompt_and_from_chosen():
    hh = TASKS["hh"]
    assert hh.query(rec({"prompt": TWO_TURNS_PROMPT})) == TWO_TURNS_PROMPT
    assert hh.query(rec({"chosen": TWO_TURNS, "rejected": "x"})) == TWO_TURNS_PROMPT


def test_imdb_query_from_prompt_and_from_text():
    imdb = TASKS["imdb"]
    assert imdb.query(rec({"prompt": "An opening that is kept as it is, all of it"})) == \
        "An opening that is kept as it is, all of it"
    text = "I<br />loved this<br /><br />film so   much, it was great and then some more."
    assert imdb.query(rec({"text": text, "label": 0})) == "I loved this film so much, it was"


def test_imdb_query_prompt_wins_over_text():
    imdb = TASKS["imdb"]
    assert imdb.query(rec({"prompt": "P", "text": "one two three"})) == "P"


def test_tldr_query_from_prompt():
    q = "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: p\n\nTL;DR:"
    assert TASKS["tldr"].query(rec({"prompt": q, "summary": " s"})) == q


@pytest.mark.parametrize("task,data,needs", [
    ("hh", {"text": "hello"}, "`prompt` or `chosen`"),
    ("imdb", {"label": 1}, "`prompt` or `text`"),
    ("tldr", {"summary": " s"}, "`prompt`"),
])
def test_query_missing_field_names_location_and_field(task, data, needs):
    with pytest.raises(UserError) as err:
        TASKS[task].query(rec(data, "in.jsonl:5"))
    msg = str(err.value)
    assert msg.startswith("in.jsonl:5: ")
    assert f"record has no {needs} field" in msg
    assert f"task {task}" in msg


@pytest.mark.parametrize("value", ["", "   ", 3, None])
def test_query_empty_or_non_string_field(value):
    with pytest.raises(UserError) as err:
        TASKS["tldr"].query(rec({"prompt": value}, "in.jsonl:9"))
    assert str(err.value) == "in.jsonl:9: field `prompt` must be a non-empty string (task tldr)"


# --- Task.sft_pair -----------------------------------------------------------------------

def test_imdb_sft_label_0_is_none():
    assert TASKS["imdb"].sft_pair(rec({"text": "one two three four five six seven eight nine",
                                       "label": 0})) is None


def test_imdb_sft_label_1_splits_after_eight_words():
    text = "one two<br />three four five six seven eight<br /><br />nine   ten eleven"
    pair = TASKS["imdb"].sft_pair(rec({"text": text, "label": 1}))
    assert pair == ("one two three four five six seven eight", " nine ten eleven")


def test_imdb_sft_label_1_too_short_is_none():
    assert TASKS["imdb"].sft_pair(rec({"text": "one two three four five six seven eight",
                                       "label": 1})) is None


def test_imdb_sft_missing_label():
    with pytest.raises(UserError) as err:
        TASKS["imdb"].sft_pair(rec({"text": "a b c d e f g h i j"}, "reviews.jsonl:4"))
    msg = str(err.value)
    assert msg.startswith("reviews.jsonl:4: ")
    assert "`label`" in msg


def test_tldr_sft_summary_or_completion():
    tldr = TASKS["tldr"]
    assert tldr.sft_pair(rec({"prompt": "P TL;DR:", "summary": " S"})) == ("P TL;DR:", " S")
    assert tldr.sft_pair(rec({"prompt": "P TL;DR:", "completion": " C"})) == ("P TL;DR:", " C")


def test_tldr_sft_missing_target():
    with pytest.raises(UserError) as err:
        TASKS["tldr"].sft_pair(rec({"prompt": "P TL;DR:"}, "t.jsonl:2"))
    assert str(err.value) == ("t.jsonl:2: field `completion` must be a non-empty string "
                              "(task tldr (SFT))")


def test_hh_sft_from_chosen():
    assert TASKS["hh"].sft_pair(rec({"chosen": TWO_TURNS})) == (TWO_TURNS_PROMPT,
                                                                 TWO_TURNS_RESPONSE)


# --- Task.messages and raw_prompt --------------------------------------------------------

def test_hh_messages_principle_only_in_first_user_turn():
    msgs = TASKS["hh"].messages(TWO_TURNS_PROMPT, HH_PRINCIPLE)
    assert msgs == [
        {"role": "user", "content": HH_PRINCIPLE + "\n\nHi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]


def test_hh_messages_without_principle():
    assert TASKS["hh"].messages(TWO_TURNS_PROMPT, None) == hh_turns(TWO_TURNS_PROMPT)
    assert TASKS["hh"].messages(TWO_TURNS_PROMPT, "") == hh_turns(TWO_TURNS_PROMPT)


def test_imdb_messages():
    imdb = TASKS["imdb"]
    prefix = "I loved this film so much, it was"
    assert imdb.messages(prefix, None) == [
        {"role": "user", "content": "Continue this movie review: " + prefix}]
    assert imdb.messages(prefix, IMDB_PRINCIPLE) == [
        {"role": "user",
         "content": IMDB_PRINCIPLE + "\n\nContinue this movie review: " + prefix}]


def test_tldr_messages():
    q = "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: p\n\nTL;DR:"
    assert TASKS["tldr"].messages(q, None) == [{"role": "user", "content": q}]
    assert TASKS["tldr"].messages(q, TLDR_PRINCIPLE) == [
        {"role": "user", "content": TLDR_PRINCIPLE + "\n\n" + q}]


def test_raw_prompt():
    assert TASKS["tldr"].raw_prompt("Q", "P") == "P\nQ"
    assert TASKS["tldr"].raw_prompt("Q", None) == "Q"
    assert TASKS["hh"].raw_prompt(TWO_TURNS_PROMPT, HH_PRINCIPLE) == \
        HH_PRINCIPLE + "\n" + TWO_TURNS_PROMPT


@pytest.fixture(scope="module")
def chat_tokenizer():
    from ple.models import load_tokenizer

    return load_tokenizer("tiny")


def test_principle_rendered_before_first_user_turn(chat_tokenizer):
    msgs = TASKS["hh"].messages(TWO_TURNS_PROMPT, HH_PRINCIPLE)
    text = chat_tokenizer.apply_chat_template(msgs, tokenize=False,
                                              add_generation_prompt=True)
    assert text.count(HH_PRINCIPLE) == 1
    assert "<|im_start|>user\n" + HH_PRINCIPLE + "\n\nHi there<|im_end|>" in text
    assert "<|im_start|>user\nTell me a joke.<|im_end|>" in text
    assert text.index(HH_PRINCIPLE) < text.index("Tell me a joke.")
    assert text.endswith("<|im_start|>assistant\n")


# --- built-in query sets and loading -----------------------------------------------------

@pytest.mark.parametrize("task,n_train,n_heldout", [
    ("hh", 64, 32), ("imdb", 282, 128), ("tldr", 48, 24)])
def test_builtin_queries_sizes_and_disjoint(task, n_train, n_heldout):
    train = builtin_queries(task, "train")
    heldout = builtin_queries(task, "heldout")
    assert len(train) == n_train
    assert len(heldout) == n_heldout
    assert len(set(train)) == n_train
    assert len(set(heldout)) == n_heldout
    assert set(train).isdisjoint(heldout)


def test_builtin_queries_shape():
    assert all(q.startswith("\n\nHuman:") and q.endswith("\n\nAssistant:")
               for q in builtin_queries("hh", "train") + builtin_queries("hh", "heldout"))
    assert all(q.endswith("\n\nTL;DR:")
               for q in builtin_queries("tldr", "train") + builtin_queries("tldr", "heldout"))


@pytest.mark.parametrize("task", ["hh", "imdb", "tldr"])
def test_load_queries_default_is_builtin_train(task):
    assert load_queries(TASKS[task], None) == builtin_queries(task, "train")


def test_load_queries_from_file(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": TWO_TURNS, "rejected": TWO_TURNS_PROMPT + " No."},
        {"prompt": "\n\nHuman: Q?\n\nAssistant:"},
    ])
    assert load_queries(TASKS["hh"], path) == [TWO_TURNS_PROMPT, "\n\nHuman: Q?\n\nAssistant:"]


def test_load_queries_bad_record_names_line(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "a"}, {"summary": " b"}])
    with pytest.raises(UserError) as err:
        load_queries(TASKS["tldr"], path)
    assert str(err.value).startswith(f"{path}:2: record has no `prompt` field")


def test_load_queries_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_queries(TASKS["tldr"], str(path))
    assert str(err.value) == f"data {path}: no records"


def test_load_sft_pairs_skips_negatives(tmp_path):
    path = write_jsonl(tmp_path / "imdb.jsonl", [
        {"text": "bad bad bad bad bad bad bad bad bad", "label": 0},
        {"text": "a b c d e f g h i j", "label": 1},
    ])
    assert load_sft_pairs(TASKS["imdb"], path) == [("a b c d e f g h", " i j")]


def test_load_sft_pairs_none_usable(tmp_path):
    path = write_jsonl(tmp_path / "imdb.jsonl", [
        {"text": "bad bad bad bad bad bad bad bad bad", "label": 0}])
    with pytest.raises(UserError) as err:
        load_sft_pairs(TASKS["imdb"], path)
    assert "no usable supervised examples for task imdb" in str(err.value)


# --- the shared offline data (when present) ----------------------------------------------

HH_TEST = SHARED_DATA / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
TLDR_SFT_TEST = SHARED_DATA / "tldr" / "sft_test.jsonl"


@pytest.mark.skipif(not HH_TEST.is_file(), reason=f"shared data {HH_TEST} not present")
def test_shared_hh_helpful_base_queries():
    queries = load_queries(TASKS["hh"], str(HH_TEST))
    assert len(queries) == 2354
    assert all(q.endswith("\n\nAssistant:") for q in queries)
    assert all(q.startswith("\n\nHuman:") for q in queries)


@pytest.mark.skipif(not TLDR_SFT_TEST.is_file(),
                    reason=f"shared data {TLDR_SFT_TEST} not present")
def test_shared_tldr_sft_pairs():
    pairs = load_sft_pairs(TASKS["tldr"], str(TLDR_SFT_TEST))
    assert len(pairs) == 377
    assert all(q.startswith("SUBREDDIT: r/") and q.endswith("\n\nTL;DR:") for q, _ in pairs)
    assert all(s.startswith(" ") and s.strip() for _, s in pairs)


def test_hh_plain_prompt_is_one_user_turn():
    from ple.tasks import TASKS as _TASKS

    assert _TASKS["hh"].messages("How do I bake bread?", "P") == [
        {"role": "user", "content": "P\n\nHow do I bake bread?"}]


def test_a_new_task_is_one_object_in_tasks(monkeypatch, tmp_path):
    """A task is one Task subclass and one entry in TASKS; where ple looks tasks up by name
    (here `ple eval`'s checks and test split), it is found and read with its own records."""
    from ple.evaluation.evaluate import EvalConfig, load_test_split, validate
    from ple.tasks import Task

    class PoemTask(Task):
        name = "poem"
        principle = "Write a vivid poem."
        hub_dataset = "someone/poems"
        instruction = "Write a poem about: "

    monkeypatch.setitem(TASKS, "poem", PoemTask())
    path = write_jsonl(tmp_path / "poems.jsonl", [{"prompt": "the sea", "completion": " Waves"}])
    poem = TASKS["poem"]
    assert load_queries(poem, path) == ["the sea"]
    assert load_test_split(poem, path) == ([("the sea", " Waves")], 0)
    assert poem.messages("the sea", "P") == [
        {"role": "user", "content": "P\n\nWrite a poem about: the sea"}]
    validate(EvalConfig(task="poem", output_dir=str(tmp_path / "eval")))
