"""Built-in trained rewards (ple.rewards.builtin): trained once on first use, cached under a
key of data, settings and RECIPE_VERSION (never the code), reused afterwards; refused in one
line without their data."""

import dataclasses
import json
from pathlib import Path

import pytest

from ple.errors import UserError

from conftest import SHARED_DATA, run_ple

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SHARED_DATA / "imdb").is_dir(),
                                 reason="needs ../shared/data (the IMDb slice)")]


def isolate_rewards(tmp_path, monkeypatch):
    """A cache with no trained reward, sharing the default model's prepared tokenizer (so
    that each test does not prepare it again from the GGUF file)."""
    from ple.models import default_model_dir

    tokenizer_dir = default_model_dir(weights=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tokenizer_dir.name).symlink_to(tokenizer_dir)
    monkeypatch.setenv("PLE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLE_DATA_DIR", str(SHARED_DATA))
    return isolate_rewards(tmp_path, monkeypatch)


def test_trained_once_then_reused(empty_cache, tmp_path, monkeypatch):
    """The first run that names the reward trains it (saying so) and trains with it; later
    ones load the cached model and never train it again."""
    from ple.rewards import builtin, load_reward

    out = tmp_path / "run"
    result = run_ple("train", "--model", "tiny", "--task", "imdb", "--reward",
                     "tiny-imdb-sentiment", "--max-steps", "1", "--batch-size", "2",
                     "--max-new-tokens", "4", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ple: preparing reward `tiny-imdb-sentiment` once" in result.stderr
    assert (out / "adapter" / "adapter_config.json").is_file()
    [prepared] = (empty_cache / "rewards").iterdir()
    assert (prepared / "ple_reward.json").is_file() and (prepared / "reward_eval.json").is_file()
    # The run records which trained model the reward was: its name and cache key.
    assert prepared.name == builtin.model_id("tiny-imdb-sentiment")
    assert json.loads((out / "summary.json").read_text())["reward_model"] == prepared.name

    def no_training(cfg):
        raise AssertionError("a cached reward was trained again")

    monkeypatch.setattr("ple.rewards.training.run.train_reward_model", no_training)
    assert builtin.prepared_reward_dir("tiny-imdb-sentiment") == prepared
    reward = load_reward("tiny-imdb-sentiment", "imdb")
    assert reward.name == "tiny-imdb-sentiment" and reward.model_id == prepared.name
    scores = reward.score(["A"] * 2, [" great film", " awful film"])
    assert len(scores) == 2 and scores == load_reward("tiny-imdb-sentiment", "imdb").score(
        ["A"] * 2, [" great film", " awful film"])


def test_key_follows_settings_data_and_version(empty_cache, monkeypatch, tmp_path):
    from ple.rewards import builtin

    recipe = builtin.RECIPES["tiny-imdb-sentiment"]
    key = builtin.cache_key(recipe)
    assert builtin.cache_key(recipe) == key
    other = dataclasses.replace(recipe, settings={**recipe.settings, "max_steps": 5})
    assert builtin.cache_key(other) != key
    # A setting is its value, stated or defaulted: stating a default keeps the key, and a
    # changed default changes it.
    stated = dataclasses.replace(recipe, settings={**recipe.settings, "learning_rate": 1e-4})
    assert builtin.cache_key(stated) == key
    with monkeypatch.context() as patch:
        patch.setattr(builtin, "RewardTrainConfig", dataclasses.make_dataclass(
            "Changed", [("learning_rate", float, dataclasses.field(default=2e-4))],
            bases=(builtin.RewardTrainConfig,)))
        assert builtin.cache_key(recipe) != key
    with monkeypatch.context() as patch:
        patch.setattr(builtin, "RECIPE_VERSION", builtin.RECIPE_VERSION + 1)
        assert builtin.cache_key(recipe) != key
    assert builtin.cache_key(recipe) == key
    data = tmp_path / "data" / "imdb"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text('{"text": "fine", "label": 1}\n')
    (data / "test.jsonl").write_bytes((SHARED_DATA / "imdb" / "test.jsonl").read_bytes())
    monkeypatch.setenv("PLE_DATA_DIR", str(tmp_path / "data"))
    assert builtin.cache_key(recipe) != key


def test_key_reads_no_source_file(empty_cache, monkeypatch):
    """The key reads the data files and nothing else, so a change to the training code (a
    refactor) keeps every cached reward; RECIPE_VERSION is bumped by hand instead."""
    import builtins
    import io
    import tokenize

    from ple.rewards import builtin

    opened = []

    def recording(real):
        def open_(file, *args, **kwargs):
            opened.append(str(file))
            return real(file, *args, **kwargs)
        return open_

    monkeypatch.setattr(builtins, "open", recording(builtins.open))
    monkeypatch.setattr(io, "open", recording(io.open))
    monkeypatch.setattr(tokenize, "open", recording(tokenize.open))  # inspect.getsource's
    builtin.cache_key(builtin.RECIPES["tiny-imdb-sentiment"])
    builtin.cache_key(builtin.RECIPES["tiny-hh-preference"])
    assert opened and all(not name.endswith(".py") for name in opened), opened
    assert {Path(name).name for name in opened} == {"train.jsonl", "test.jsonl",
                                                    "test.jsonl.gz"}


def test_missing_data_is_one_line(tmp_path, monkeypatch):
    isolate_rewards(tmp_path, monkeypatch)
    monkeypatch.setenv("PLE_DATA_DIR", str(tmp_path / "nothing"))
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", "--reward", "tiny-imdb-sentiment",
                     "--output-dir", out)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "reward `tiny-imdb-sentiment` is trained on first use from imdb/train.jsonl" in line
    assert "PLE_DATA_DIR" in line and not out.exists()


def test_hh_trains_with_its_builtin_reward_by_default(empty_cache, tmp_path, monkeypatch):
    """`ple train --task hh` with no reward flag prepares the HH preference model (here its
    tiny recipe, standing in for the real one's 40 minutes) from harmless and helpful pairs,
    reports the held-out accuracy of each, and trains with it."""
    from ple.rewards import builtin

    monkeypatch.setitem(builtin.RECIPES, "hh-preference",
                        dataclasses.replace(builtin.RECIPES["tiny-hh-preference"],
                                            name="hh-preference"))
    out = tmp_path / "run"
    result = run_ple("train", "--model", "tiny", "--task", "hh", "--max-steps", "2",
                     "--batch-size", "2", "--max-new-tokens", "4", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ple: preparing reward `hh-preference` once" in result.stderr
    assert "harmless-base: " in result.stderr and "helpful-base: " in result.stderr
    [prepared] = (empty_cache / "rewards").iterdir()
    evaluation = json.loads((prepared / "reward_eval.json").read_text())
    per_source = evaluation["per_source"]
    assert sorted(Path(s).parent.name for s in per_source) == \
        ["harmless-base", "helpful-base"]
    assert sum(v["n"] for v in per_source.values()) == evaluation["n_eval"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    # Gated (ple.rewards.gated): a probe and a gate per file; the reward served is the
    # gated sum of the model's four outputs.
    assert evaluation["combine"] == "gated" and 0 <= evaluation["gate_accuracy"] <= 1
    info = json.loads((prepared / "ple_reward.json").read_text())
    assert info["combine"] == "gated" and len(info["gate_bias"]) == 2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from ple.rewards import load_reward
    from ple.rewards.gated import gated_reward

    reward = load_reward(None, "hh")
    texts = reward.texts(["How do I pick a lock?"] * 2, [" I can't help with that.", " Sure."])
    tokenizer = AutoTokenizer.from_pretrained(prepared)
    model = AutoModelForSequenceClassification.from_pretrained(prepared)
    with torch.no_grad():
        logits = torch.cat([model(**tokenizer(t, return_tensors="pt")).logits for t in texts])
    assert logits.shape == (2, 4)
    expected = gated_reward(logits, info["gate_bias"]).tolist()
    assert reward.score(["How do I pick a lock?"] * 2, [" I can't help with that.", " Sure."]) \
        == pytest.approx(expected, abs=1e-5)


def test_a_gated_reward_needs_two_files_each_holding_out_its_part(tmp_path):
    from ple.rewards.gated import train_gated_preference
    from ple.rewards.training.config import RewardTrainConfig

    one = str(SHARED_DATA / "hh-rlhf/harmless-base/test.jsonl.gz")
    cfg = RewardTrainConfig(kind="preference", base="tiny", data=one,
                            output_dir=str(tmp_path / "rm"))
    with pytest.raises(UserError, match="a gated reward needs --kind preference and two"):
        train_gated_preference(cfg)
    assert not (tmp_path / "rm").exists()
