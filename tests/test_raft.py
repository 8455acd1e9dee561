"""RAFT-K in the same harness: best-of-K by reward, then SFT on the kept responses."""

import json

import pytest
import yaml

from conftest import prompts, run_ple, trainable_snapshot, unchanged_parameters
from ple.baselines.raft import RAFTTrainer
from ple.config import load_config
from ple.models import paper_lora
from ple.rewards.vader import VaderReward

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training


def test_raft_trains_every_parameter_and_keeps_the_best(tmp_path):
    cfg = load_config(None, {"method": "raft", "model": "tiny", "task": "imdb",
                             "max_steps": 2, "batch_size": 3, "raft_k": 4,
                             "max_new_tokens": 8, "output_dir": str(tmp_path / "run")})
    trainer = RAFTTrainer(model="tiny", args=cfg, reward_funcs=VaderReward(),
                          train_dataset=prompts(["The film opens with", "I expected more from",
                                                 "Nobody told me"]),
                          peft_config=paper_lora())
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert unchanged_parameters(trainer.model, before) == []
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(isinstance(r["loss"], float) for r in rows)
    # Equal-budget bookkeeping: 3 queries x 4 samples per step.
    assert [r["generated_responses"] for r in rows] == [12, 24]
    assert [r["optimizer_steps"] for r in rows] == [1, 2]
    for s in (json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")):
        assert len(s["rewards"]) == 4 and s["reward"] == max(s["rewards"])
    for r in rows:
        assert r["reward_best_mean"] >= r["reward_mean"]


def test_raft_from_the_command_line(tmp_path):
    out = tmp_path / "D"
    result = run_ple("train", "--method", "raft", "--model", "tiny", "--max-steps", "2",
                     "--batch-size", "2", "--raft-k", "2", "--max-new-tokens", "6",
                     "--output-dir", out)
    assert result.returncode == 0, result.stderr[-1500:]
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "reward_curves.png",
                 "adapter/adapter_model.safetensors"):
        assert (out / name).is_file(), name
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == "raft"


@pytest.mark.parametrize("value", ["0", "-1"])
def test_raft_k_must_be_positive(value, tmp_path):
    result = run_ple("train", "--method", "raft", "--raft-k", value, "--output-dir",
                     tmp_path / "o")
    assert result.returncode == 2 and "`raft_k`" in result.stderr
