import pytest

import dataclasses

from ple.cli import train_parser
from ple.config import CONFIGS, PLEConfig, PPOConfig, RAFTConfig, TrainConfig, load_config
from ple.errors import UserError


def test_defaults():
    cfg = PLEConfig()
    assert (cfg.tau0, cfg.alpha, cfg.lora_r, cfg.lora_alpha) == (0.2, 0.9, 8, 16)
    assert cfg.max_prompt_tokens == 256 and cfg.rank_loss == "linear"
    assert (cfg.replay_window, cfg.sft_anchor) == (1, 1.0)  # measured, not the paper's
    # The design-space variants of issue 34 default to the paper's form.
    assert (cfg.tau_scale, cfg.wsft_coef, cfg.wsft_positive_only) == ("absolute", 1.0, False)
    assert cfg.principle_name is None and cfg.principle_text is None


def test_every_field_is_documented_and_is_a_flag():
    for cls in CONFIGS:
        flags = {opt for action in train_parser(cls)._actions for opt in action.option_strings}
        for f in dataclasses.fields(cls):
            assert len(f.metadata["help"]) > 10, f.name
            assert "--" + f.name.replace("_", "-") in flags
    for contract in ("--method", "--task", "--model", "--reward", "--data", "--max-steps",
                     "--batch-size", "--seed", "--output-dir", "--tau0", "--alpha", "--resume"):
        assert contract in {opt for action in train_parser(PLEConfig)._actions
                            for opt in action.option_strings}


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_help_prints_every_field_doc_as_written(cls):
    """A doc with a per cent sign ("81 % of the gradient") once crashed `ple train --help`:
    argparse %-formats help strings."""
    text = train_parser(cls).format_help()
    for f in dataclasses.fields(cls):
        assert " ".join(f.metadata["help"].split()[:4]) in " ".join(text.split()), f.name
    if cls is PLEConfig:
        assert "81 % of the gradient" in " ".join(text.split())


def test_each_method_has_its_own_settings():
    assert not hasattr(RAFTConfig(), "tau0") and RAFTConfig().raft_k == 4
    assert PPOConfig().method == "ppo" and TrainConfig(method="dpo").method == "dpo"
    with pytest.raises(UserError, match="`method` = 'ple': is configured by PLEConfig"):
        TrainConfig(method="ple")
    with pytest.raises(UserError, match="config key `tau0` is not a setting of method raft"):
        load_config(None, {"method": "raft", "tau0": 0.3})


def test_yaml_then_flags_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tau0: 0.5\nalpha: 0.8\nmax_steps: 7\nreplay_window: 2\n")
    cfg = load_config(str(path), {"alpha": 0.7})
    assert (cfg.tau0, cfg.alpha, cfg.max_steps, cfg.replay_window) == (0.5, 0.7, 7, 2)


def test_unknown_yaml_key_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tau0: 0.5\n\nlearnig_rate: 0.1\n")
    with pytest.raises(UserError, match=r"c\.yaml:3: unknown config key `learnig_rate`"):
        load_config(str(path))


def test_wrong_type_names_key_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: eight\n")
    with pytest.raises(UserError, match=r"c\.yaml:1: `batch_size` must be an integer"):
        load_config(str(path))


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tau0: 0.5\nalpha: [0.9\n")
    with pytest.raises(UserError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(str(path))


@pytest.mark.parametrize("key,value,rule", [
    ("alpha", 1.0, "must be in \\(0, 1\\)"), ("alpha", 0.0, "must be in \\(0, 1\\)"),
    ("tau0", -0.1, ">= 0"), ("batch_size", 0, ">= 1"), ("max_steps", 0, ">= 1"),
    ("rank_loss", "square", "one of linear, hinge"), ("task", "chess", "one of"),
    ("top_p", 1.5, "\\(0, 1\\]"), ("replay_window", -1, ">= 0"),
    ("learning_rate", 0.0, "> 0"), ("sft_steps", 3, "needs sft_data"),
    ("rank_loss", "dpo", "one of linear, hinge, logistic"), ("rank_beta", 0.0, "> 0"),
    ("tau_scale", "relative", "one of absolute, spread"), ("wsft_coef", -0.5, ">= 0"),
    ("principle_name", "nice", "one of paper, fan-voice, one-shot for task imdb"),
])
def test_out_of_range_values_name_the_key(key, value, rule):
    with pytest.raises(UserError, match=f"`{key}` = .*{rule}"):
        load_config(None, {key: value})


@pytest.mark.parametrize("settings,key,rule", [
    ({"tau_scale": "spread", "batch_size": 1}, "tau_scale", "needs batch_size >= 2"),
    ({"ablation": "no_wsft", "wsft_coef": 0.3}, "wsft_coef", "no_wsft is wsft_coef 0"),
    ({"ablation": "no_rank", "wsft_coef": 0.0}, "wsft_coef", "trains only L_weighted-sft"),
    ({"principle_name": "paper", "principle": "Be nice."}, "principle_name", "give one of"),
    ({"task": "hh", "principle_name": "one-shot"}, "principle_name", "one of paper for task hh"),
    ({"method": "ple", "beta": 0.1}, "beta", "KL weight of dpo and rloo; method ple"),
    ({"method": "dpo", "beta": 0.0}, "beta", "must be > 0"),
])
def test_conflicting_design_settings_name_the_key(settings, key, rule):
    with pytest.raises(UserError, match=f"^config key `{key}` = .*{rule}"):
        load_config(None, settings)


def test_principle_name_picks_the_tasks_shipped_text():
    from ple.tasks import IMDB_ONE_SHOT, IMDB_PRINCIPLE

    assert load_config(None, {"principle_name": "one-shot"}).principle_text == IMDB_ONE_SHOT
    assert load_config(None, {"principle_name": "paper"}).principle_text == IMDB_PRINCIPLE


def test_unknown_override_key():
    with pytest.raises(UserError, match="unknown config key `nope`"):
        load_config(None, {"nope": 1})


def test_every_shipped_config_loads():
    from conftest import REPO

    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert len(configs) == 18  # 3 tasks x 6 methods
    for path in configs:
        cfg = load_config(str(path))
        task, method = path.stem.split("-")
        assert (cfg.task, cfg.method) == (task, method)
