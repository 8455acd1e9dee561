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


def test_lora_base_loads_in_bf16_by_default_and_the_saved_adapter_loads(tmp_path):
    """The default dtype on a CUDA GPU with bf16 (ple.models.init_kwargs): the frozen base
    in bfloat16, the adapter in float32; training runs, and save_model(d) gives a directory
    AutoPeftModelForCausalLM loads."""
    from peft import AutoPeftModelForCausalLM

    from ple import PLEConfig, PLETrainer, paper_lora

    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    args = PLEConfig(model="tiny", output_dir=str(tmp_path / "run"), max_steps=2,
                     batch_size=2, max_new_tokens=6)
    trainer = PLETrainer(model="tiny", args=args, reward_funcs="vader",
                         train_dataset=prompts(["The film opens with", "Nobody told me"]),
                         peft_config=paper_lora())
    base = trainer.model.get_base_model()
    assert base.model.embed_tokens.weight.dtype == torch.bfloat16
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}
    summary = trainer.train()
    assert summary["model_dtype"] == "bfloat16"
    trainer.save_model(str(tmp_path / "saved"))
    loaded = AutoPeftModelForCausalLM.from_pretrained(str(tmp_path / "saved"))
    assert loaded.peft_config["default"].r == 8
