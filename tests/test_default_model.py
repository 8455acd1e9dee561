"""Integration: two PLE steps on the real default model (SmolLM2-135M-Instruct, offline)."""

import json

import pytest

from conftest import trainable_snapshot, unchanged_parameters

from ple.config import load_config
from ple.models import paper_lora
from ple.rewards.vader import VaderReward
from ple.tasks import builtin_queries
from ple.trainer import PLETrainer

pytestmark = pytest.mark.slow


def test_two_ple_steps_on_default_model(tmp_path):
    cfg = load_config(None, {"model": "default", "task": "imdb", "max_steps": 2,
                             "batch_size": 2, "max_new_tokens": 16,
                             "output_dir": str(tmp_path / "run")})
    trainer = PLETrainer(model="default", args=cfg, reward_funcs=VaderReward(),
                         peft_config=paper_lora())
    base = trainer.model.get_base_model()
    assert base.config.model_type == "llama" and base.num_parameters() > 100e6
    assert trainer.queries == builtin_queries("imdb", "train")
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert unchanged_parameters(trainer.model, before) == []
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert len(rows) == 4
    # A real pretrained model writes words, not the tiny model's token soup.
    assert sum(len(r["response"].split()) for r in rows) >= 8
    prompt = trainer.prompter.text(rows[0]["query"], guided=True)
    assert "<|im_start|>user\nWrite a positive and enthusiastic review" in prompt
