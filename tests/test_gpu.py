"""On a CUDA GPU (skipped without one): PLE trains with a classifier reward, and the policy,
the reward model and the evaluation all run on the GPU."""

import json

import pytest
import torch

from conftest import prompts
from test_rewards import _save_tiny_classifier

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (none on this machine)")]


def test_two_ple_steps_with_a_classifier_reward_on_the_gpu(tmp_path):
    from ple import PLEConfig, PLETrainer, paper_lora

    classifier = _save_tiny_classifier(tmp_path / "clf", 2, seed=0)
    args = PLEConfig(model="tiny", output_dir=str(tmp_path / "run"), max_steps=2,
                     batch_size=2, max_new_tokens=6, eval_queries=2)
    trainer = PLETrainer(model="tiny", args=args, reward_funcs=str(classifier),
                         train_dataset=prompts(["The film opens with", "Nobody told me"]),
                         peft_config=paper_lora())
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert trainer.reward._model.device.type == "cuda"
    summary = trainer.train()
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2] and summary["eval_after"]["n"] == 2
