import pytest

from ple.cli import build_parser
from ple.config import FIELDS, PLEConfig, load_config
from ple.errors import UserError


def test_defaults_are_the_papers():
    cfg = PLEConfig()
    assert (cfg.tau0, cfg.alpha, cfg.lora_r, cfg.lora_alpha) == (0.2, 0.9, 8, 16)
    assert cfg.max_prompt_tokens == 256 and cfg.rank_loss == "linear"
    assert cfg.replay_window is None  # Algorithm 1 replays all of D_train


def test_every_field_is_documented_and_is_a_flag():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {opt for action in train._actions for opt in action.option_strings}
    for name, f in FIELDS.items():
        assert len(f.metadata["help"]) > 10, name
        assert "--" + name.replace("_", "-") in flags
    for contract in ("--method", "--task", "--model", "--reward", "--data", "--max-steps",
                     "--batch-size", "--seed", "--output-dir", "--tau0", "--alpha", "--resume"):
        assert contract in flags


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
    ("top_p", 1.5, "\\(0, 1\\]"), ("replay_window", 0, ">= 1"),
    ("learning_rate", 0.0, "> 0"), ("sft_steps", 3, "needs sft_data"),
])
def test_out_of_range_values_name_the_key(key, value, rule):
    with pytest.raises(UserError, match=f"`{key}` = .*{rule}"):
        load_config(None, {key: value})


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
