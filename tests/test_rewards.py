"""Tests for ple.rewards: VADER, module:function rewards, checked_scores, ClassifierReward."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest
import torch

from ple.errors import UserError
from ple.rewards import checked_scores, load_reward

# --- VADER (the offline imdb default) ----------------------------------------------------

POSITIVE = "This movie is wonderful and I loved it"
NEGATIVE = "terrible, awful, boring"


@pytest.fixture(scope="module")
def vader():
    return load_reward(None, "imdb")


def test_imdb_default_is_vader(vader):
    from ple.rewards.vader import VaderReward

    assert isinstance(vader, VaderReward)
    assert vader.name == "vader"
    assert isinstance(load_reward("vader", "hh"), VaderReward)


def test_vader_polarity(vader):
    pos, neg, neutral = vader.score(["q", "q", "q"], [POSITIVE, NEGATIVE, ""])
    assert pos > 0.5
    assert neg < -0.5
    assert neutral == 0.0


def test_vader_scores_only_the_response(vader):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    expected = SentimentIntensityAnalyzer().polarity_scores(POSITIVE)["compound"]
    queries = ["", "I hated every minute of this terrible, awful film.",
               "Wonderful, brilliant, amazing masterpiece!"]
    scores = vader.score(queries, [POSITIVE] * 3)
    assert scores == [expected] * 3
    assert checked_scores(vader, queries, [POSITIVE] * 3) == [expected] * 3


def test_no_offline_default_for_tldr():
    with pytest.raises(UserError) as err:
        load_reward(None, "tldr")
    msg = str(err.value)
    assert "`reward`" in msg
    assert "task tldr has no offline default reward" in msg


# --- module:function rewards -------------------------------------------------------------

MODULE_SOURCE = textwrap.dedent("""
    import math

    def length_reward(prompts, completions):
        return [len(c) - 0.5 * len(p) for p, c in zip(prompts, completions)]

    def nan_on_second(prompts, completions):
        return [1.0, math.nan, 2.0][:len(completions)]

    def inf_reward(prompts, completions):
        return [-math.inf for _ in completions]

    def raising(prompts, completions):
        raise ValueError("boom at " + str(len(completions)))

    def too_few(prompts, completions):
        return [1.0]

    def as_strings(prompts, completions):
        return ["1.5" for _ in completions]

    def not_numbers(prompts, completions):
        return ["abc" for _ in completions]

    def user_error(prompts, completions):
        from ple.errors import UserError
        raise UserError("custom message from the reward")

    NOT_CALLABLE = 3
""")


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    name = "ple_test_reward_module"
    (tmp_path / f"{name}.py").write_text(MODULE_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def test_function_reward_values(reward_module):
    from ple.rewards.function import FunctionReward

    reward = load_reward(f"{reward_module}:length_reward", "hh")
    assert isinstance(reward, FunctionReward)
    assert reward.name == f"{reward_module}:length_reward"
    queries = ["ab", "abcd", ""]
    responses = ["xyz", "", "hello"]
    assert reward.score(queries, responses) == [2.0, -2.0, 5.0]
    assert checked_scores(reward, queries, responses) == [2.0, -2.0, 5.0]


def test_function_reward_scores_converted_to_float(reward_module):
    reward = load_reward(f"{reward_module}:as_strings", "tldr")
    scores = checked_scores(reward, ["a", "b"], ["c", "d"])
    assert scores == [1.5, 1.5]
    assert all(type(s) is float for s in scores)


def test_function_reward_missing_module():
    with pytest.raises(UserError) as err:
        load_reward("ple_no_such_module_xyz:fn", "hh")
    assert "cannot import module ple_no_such_module_xyz" in str(err.value)


@pytest.mark.parametrize("attr", ["no_such_function", "NOT_CALLABLE"])
def test_function_reward_missing_function(reward_module, attr):
    with pytest.raises(UserError) as err:
        load_reward(f"{reward_module}:{attr}", "hh")
    assert str(err.value) == (f"reward `{reward_module}:{attr}`: module {reward_module} has "
                              f"no function {attr}")


def test_checked_scores_nan_names_query(reward_module):
    reward = load_reward(f"{reward_module}:nan_on_second", "hh")
    with pytest.raises(UserError) as err:
        checked_scores(reward, ["first query", "second query", "third query"],
                       ["a", "b", "c"])
    msg = str(err.value)
    assert msg == f"reward `{reward_module}:nan_on_second` gave nan for query 'second query'"


def test_checked_scores_inf_names_query_truncated(reward_module):
    reward = load_reward(f"{reward_module}:inf_reward", "hh")
    long_query = "Q" * 50 + "R" * 50
    with pytest.raises(UserError) as err:
        checked_scores(reward, [long_query], ["a"])
    msg = str(err.value)
    assert msg == f"reward `{reward_module}:inf_reward` gave -inf for query {'Q' * 50 + 'R' * 30!r}"
    assert long_query not in msg


def test_checked_scores_function_raises_with_its_traceback(reward_module):
    """A bug in the user's reward function is theirs to see: its own exception and
    traceback (down to the line that raised), with a note naming the reward."""
    reward = load_reward(f"{reward_module}:raising", "hh")
    with pytest.raises(ValueError, match="boom at 2") as err:
        checked_scores(reward, ["q1", "q2"], ["a", "b"])
    assert err.value.__notes__ == [f"(raised by reward `{reward_module}:raising`)"]
    assert err.traceback[-1].name == "raising"


def test_checked_scores_non_numeric(reward_module):
    reward = load_reward(f"{reward_module}:not_numbers", "hh")
    with pytest.raises(UserError) as err:
        checked_scores(reward, ["q1"], ["a"])
    assert str(err.value).startswith(f"reward `{reward_module}:not_numbers` returned "
                                     f"something that is not a number")


def test_checked_scores_passes_user_error_through(reward_module):
    reward = load_reward(f"{reward_module}:user_error", "hh")
    with pytest.raises(UserError) as err:
        checked_scores(reward, ["q1"], ["a"])
    assert str(err.value) == "custom message from the reward"


def test_checked_scores_wrong_count(reward_module):
    reward = load_reward(f"{reward_module}:too_few", "hh")
    with pytest.raises(UserError) as err:
        checked_scores(reward, ["q1", "q2", "q3"], ["a", "b", "c"])
    assert str(err.value) == f"reward `{reward_module}:too_few` returned 1 scores for 3 responses"


class _Fixed:
    name = "fixed"

    def __init__(self, values):
        self.values = values

    def score(self, queries, responses):
        return self.values


@pytest.mark.parametrize("bad,shown", [(math.nan, "nan"), (math.inf, "inf"),
                                       (-math.inf, "-inf")])
def test_checked_scores_non_finite_plain_object(bad, shown):
    with pytest.raises(UserError) as err:
        checked_scores(_Fixed([0.5, bad]), ["ok", "the bad one"], ["x", "y"])
    assert str(err.value) == f"reward `fixed` gave {shown} for query 'the bad one'"


def test_checked_scores_too_many():
    with pytest.raises(UserError) as err:
        checked_scores(_Fixed([1.0, 2.0, 3.0]), ["a", "b"], ["x", "y"])
    assert str(err.value) == "reward `fixed` returned 3 scores for 2 responses"


def test_checked_scores_ok_values():
    assert checked_scores(_Fixed([1, -2.5]), ["a", "b"], ["x", "y"]) == [1.0, -2.5]


# --- ClassifierReward on a tiny local BERT ------------------------------------------------

WORDS = ("the a movie film was is good bad great awful and i loved hated it this "
         "wonderful terrible boring fun very plot acting").split()
MAX_LEN = 16


def _save_tiny_classifier(path, num_labels: int, seed: int):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir()
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)},
                                  do_lower_case=True, model_max_length=MAX_LEN)
    # the tokenizer really knows the words (not everything [UNK])
    assert tokenizer("the movie was good")["input_ids"] == [
        2, *(tokens.index(w) for w in ("the", "movie", "was", "good")), 3]
    tokenizer.save_pretrained(str(path))
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=64, num_labels=num_labels)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config).eval()
        with torch.no_grad():  # larger weights than the default init: scores that differ
            for param in model.parameters():
                param.normal_(0.0, 0.5)
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    return _save_tiny_classifier(tmp_path_factory.mktemp("clf") / "tiny-bert", 2, seed=0)


@pytest.fixture(scope="module")
def single_logit_dir(tmp_path_factory):
    return _save_tiny_classifier(tmp_path_factory.mktemp("rm") / "tiny-rm", 1, seed=1)


def _direct_logits(path, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(text, truncation=True, return_tensors="pt")
            rows.append(model(**batch).logits[0])
    return torch.stack(rows)


QUERIES = ["the movie was", "i loved", "this film is", "the plot"]
RESPONSES = [" good", " it and the acting was great", " awful", " very very boring"]


def test_classifier_label_1_logits_match_direct_forward(classifier_dir):
    from ple.rewards.classifier import ClassifierReward

    reward = load_reward(str(classifier_dir), "imdb", label=1)
    assert isinstance(reward, ClassifierReward)
    assert reward.name == str(classifier_dir)
    scores = checked_scores(reward, QUERIES, RESPONSES)
    expected = _direct_logits(classifier_dir, [q + r for q, r in zip(QUERIES, RESPONSES)])
    assert len(scores) == 4
    assert len({round(s, 5) for s in scores}) == 4  # different texts, different scores
    assert torch.allclose(torch.tensor(scores), expected[:, 1], atol=1e-5)
    # label 1 is really a different column from label 0
    assert not torch.allclose(expected[:, 0], expected[:, 1], atol=1e-5)
    assert reward.truncated == 0


def test_classifier_label_0_and_small_batches(classifier_dir):
    from ple.rewards.classifier import ClassifierReward

    reward = ClassifierReward(str(classifier_dir), label=0, batch_size=3)
    scores = reward.score(QUERIES, RESPONSES)
    expected = _direct_logits(classifier_dir, [q + r for q, r in zip(QUERIES, RESPONSES)])
    assert torch.allclose(torch.tensor(scores), expected[:, 0], atol=1e-5)


def test_single_logit_model_ignores_label(single_logit_dir):
    reward = load_reward(str(single_logit_dir), "hh", label=5)
    scores = reward.score(QUERIES, RESPONSES)
    expected = _direct_logits(single_logit_dir, [q + r for q, r in zip(QUERIES, RESPONSES)])
    assert expected.shape == (4, 1)
    assert torch.allclose(torch.tensor(scores), expected[:, 0], atol=1e-5)


@pytest.mark.parametrize("label", [2, -1])
def test_classifier_label_out_of_range(classifier_dir, label):
    with pytest.raises(UserError) as err:
        load_reward(str(classifier_dir), "imdb", label=label)
    assert str(err.value) == (f"config key `reward_label` = {label}: reward model "
                              f"{classifier_dir} has 2 labels")


def test_classifier_counts_truncated_texts(classifier_dir):
    reward = load_reward(str(classifier_dir), "imdb", label=1)
    # [CLS] + 14 words + [SEP] = 16 tokens: exactly the limit, not truncated.
    at_limit = " ".join(["good"] * 14)
    long_1 = " ".join(["the movie was good"] * 5)          # 20 words + 2 = 22 tokens
    long_2 = " " + " ".join(["bad"] * 14)        # "the" + 14 words + 2 = 17 tokens
    queries = ["", "", "the", ""]
    responses = [at_limit, long_1, long_2, "fun"]
    scores = reward.score(queries, responses)
    assert reward.truncated == 2
    assert len(scores) == 4
    assert all(math.isfinite(s) for s in scores)
    # truncated texts are scored on their first MAX_LEN tokens
    expected = _direct_logits(classifier_dir, [q + r for q, r in zip(queries, responses)])
    assert torch.allclose(torch.tensor(scores), expected[:, 1], atol=1e-5)
    # the counter accumulates across calls
    reward.score(["", "x"], [long_1, "good"])
    assert reward.truncated == 3


def test_classifier_missing_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-such-model"
    with pytest.raises(UserError) as err:
        load_reward(str(missing), "imdb")
    assert f"reward `{missing}`" in str(err.value)


def test_classifier_missing_relative_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        load_reward("./no-such-model", "imdb")
    assert "reward `./no-such-model`" in str(err.value)


def test_plain_texts_put_a_space_where_query_and_response_would_glue():
    from ple.rewards.texts import join_plain

    assert join_plain("The film opens with", "a bang.") == "The film opens with a bang."
    assert join_plain("\n\nHuman: hi\n\nAssistant:", "Sure") == "\n\nHuman: hi\n\nAssistant: Sure"
    assert join_plain("the movie was", " good") == "the movie was good"
    assert join_plain("ends with a space ", "x") == "ends with a space x"
    assert join_plain("", "whole review") == "whole review"


def test_gated_reward_weighs_each_score_by_its_gate():
    """R = Σ p_k r_k, p_k = σ(g_k + b_k) / Σ σ(g_j + b_j) (ple.rewards.gated), by hand."""
    from ple.rewards.gated import gated_reward

    logits = torch.tensor([[1.0, 3.0, 0.0, 0.0],     # equal gates: the mean of the scores
                           [1.0, 3.0, 2.0, -2.0],    # the first gate open, the second shut
                           [1.0, 3.0, 0.0, 0.0]])
    sig = 1 / (1 + math.exp(-2))
    expected = [2.0, (sig * 1 + (1 - sig) * 3) / 1.0, 1.0]
    got = gated_reward(logits[:2], [0.0, 0.0]).tolist() + \
        gated_reward(logits[2:], [40.0, -40.0]).tolist()
    assert got == pytest.approx(expected, abs=1e-6)
