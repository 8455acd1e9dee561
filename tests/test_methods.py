"""The methods table (ple.methods): every entry is what it says, config validation stays light,
and a new method is one class plus one line in the table."""

import json
import subprocess
import sys

import pytest

from conftest import run_ple
from ple.cli import train_parser
from ple.config import PLEConfig, TrainConfig, load_config
from ple.errors import UserError
from ple.methods import METHODS, Method, configured_by, having
from ple.trainer import PLETrainer


def test_every_entry_names_a_config_and_what_runs_it():
    from ple.online import OnlineTrainer

    for name, method in METHODS.items():
        cls = method.config_class()
        assert issubclass(cls, TrainConfig) and name in configured_by(cls), name
        assert cls(method=name).method == name
        assert method.data in ("queries", "sft_pairs", "preference_pairs"), name
        runner = method.runner()
        if method.trl:  # a function (TRLRun, examples) -> summary
            assert callable(runner) and not isinstance(runner, type), name
        else:  # ple's own loop, whose default args are the table's config class
            assert issubclass(runner, OnlineTrainer) and runner.config_class is cls, name
            assert getattr(__import__("ple"), runner.__name__) is runner  # public


def test_what_a_method_supports_is_read_from_the_table():
    assert having("distributed") == "ple and raft"
    assert having("vllm") == "ple, ppo and raft"
    with pytest.raises(UserError, match="`beta` = 0.1: is the KL weight of dpo and rloo; "
                                        "method raft has its own"):
        load_config(None, {"method": "raft", "beta": 0.1})
    with pytest.raises(UserError, match="`method` = 'chess': must be one of ple, sft, dpo, "
                                        "ppo, raft, rloo"):
        load_config(None, {"method": "chess"})


@pytest.mark.slow  # a subprocess, to import ple.config into a fresh interpreter
def test_config_validation_imports_no_trainer():
    """ple.config checks a run before any weights load: a config is a TrainingArguments (so
    transformers and torch load), but reading the methods table must not import the
    trainers or TRL."""
    code = ("import sys, ple.config; ple.config.load_config(None, {'method': 'ppo'}); "
            "heavy = [m for m in ('trl', 'ple.online', 'ple.trainer') "
            "if m in sys.modules]; assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


class TwinTrainer(PLETrainer):
    """A new method as a contributor adds one: PLE's step, plus a metric of its own, so the
    test can see that this class, not PLETrainer, ran."""

    def _rollout(self, step: int, queries: list[str]) -> tuple[list, dict]:
        items, row = super()._rollout(step, queries)
        return items, {**row, "twin_steps": step}


@pytest.mark.slow
def test_a_new_method_is_one_class_and_one_line_in_the_table(tmp_path, monkeypatch):
    # The one line: its name, the config class that holds its settings, the class that runs it.
    monkeypatch.setitem(METHODS, "twin", Method("ple.config:PLEConfig", f"{__name__}:TwinTrainer"))

    assert PLEConfig(method="twin").method == "twin"
    assert "(ple, twin)" in train_parser(PLEConfig).description
    with pytest.raises(UserError, match="`method` = 'twin': is configured by PLEConfig"):
        TrainConfig(method="twin")
    out = tmp_path / "out"
    result = run_ple("train", "--method", "twin", "--model", "tiny", "--max-steps", "1",
                     "--batch-size", "2", "--max-new-tokens", "4", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [(r["step"], r["twin_steps"]) for r in rows] == [(1, 1)]
    assert "method: twin" in (out / "config.yaml").read_text()
