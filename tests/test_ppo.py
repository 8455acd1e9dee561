"""PPO in the same harness: value head, KL to the adapter-disabled reference, clipped updates."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import prompts, run_ple
from ple.baselines.ppo import PPOTrainer
from ple.config import load_config
from ple.models import paper_lora
from ple.rewards.vader import VaderReward
from ple.sequences import pack

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training

QUERIES = ["The film opens with", "I expected more from", "Nobody told me"]


def make_trainer(out, **overrides):
    cfg = load_config(None, {"method": "ppo", "model": "tiny", "task": "imdb",
                             "max_steps": 2, "batch_size": 3, "per_device_train_batch_size": 2,
                             "max_new_tokens": 8, "output_dir": str(out), **overrides})
    return PPOTrainer(model="tiny", args=cfg, reward_funcs=VaderReward(),
                      train_dataset=prompts(QUERIES),
                      peft_config=paper_lora() if cfg.use_lora else None)


def unchanged(trainer, before):
    after = trainer.trainable()
    return [n for n, p in before.items() if torch.equal(p, after[n].detach())]


def test_ppo_trains_every_parameter_and_the_value_head(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(out)
    before = {n: p.detach().clone() for n, p in trainer.trainable().items()}
    assert {"value_head.weight", "value_head.bias"} <= before.keys()
    assert any("lora_A" in n for n in before) and any("lora_B" in n for n in before)
    trainer.train()
    assert unchanged(trainer, before) == []
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("loss", "loss_policy", "loss_value", "kl", "clipfrac", "reward_mean"):
            assert isinstance(r[key], float) and r[key] == r[key], key
        # ppo_epochs 4 x ceil(3 / per_device_train_batch_size 2) mini-batches
        assert r["n_updates"] == 8 and r["n_queries"] == 3
    assert rows[0]["kl"] == 0.0  # LoRA starts as the identity: policy = reference
    assert rows[1]["kl"] != 0.0  # ... and the reference stays put while the policy moves
    assert [r["generated_responses"] for r in rows] == [3, 6]
    assert [r["optimizer_steps"] for r in rows] == [8, 16]
    assert rows[1]["generated_tokens"] > rows[0]["generated_tokens"] > 0
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert [s["step"] for s in samples] == [1, 1, 1, 2, 2, 2]
    assert all(isinstance(s["reward"], float) and s["response"] is not None for s in samples)
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "reward_curves.png",
                 "adapter/adapter_model.safetensors", "value_head.safetensors"):
        assert (out / name).is_file(), name
    saved = load_file(str(out / "value_head.safetensors"))
    assert torch.equal(saved["weight"], trainer.value_head.weight.detach())
    assert torch.equal(saved["bias"], trainer.value_head.bias.detach())


def test_gradient_clipping_covers_the_value_head(tmp_path):
    trainer = make_trainer(tmp_path / "clip")
    batch = pack([trainer.prompter.ids(QUERIES[0])], [[5, 6, 7]], trainer.tokenizer.pad_token_id)
    norms = []

    def huge_loss(_):
        logp, values = trainer._policy_forward(batch)
        return {"loss": 1e4 * (values.sum() - logp.sum())}

    def record():
        grads = [p.grad for p in trainer.trainable().values() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))
        assert trainer.value_head.weight.grad.abs().sum() > 0

    trainer.create_optimizer()
    trainer.optimizer.step = record
    trainer._loss = huge_loss
    trainer._update([0])  # one of PPO's optimizer steps
    assert norms and norms[0] <= trainer.args.max_grad_norm * (1 + 1e-4)


def test_ppo_full_fine_tuning_keeps_a_frozen_reference(tmp_path):
    trainer = make_trainer(tmp_path / "full", use_lora=False, max_steps=1, ppo_epochs=1)
    before = {n: p.detach().clone() for n, p in trainer.trainable().items()}
    reference = {n: p.detach().clone() for n, p in trainer.frozen_base.named_parameters()}
    assert len(before) == len(reference) + 2  # every weight, and the value head
    trainer.train()
    assert unchanged(trainer, before) == []
    assert all(torch.equal(p, reference[n]) for n, p in trainer.frozen_base.named_parameters())
    assert (tmp_path / "full" / "value_head.safetensors").is_file()


FLAGS = ["train", "--method", "ppo", "--model", "tiny", "--batch-size", "3",
         "--per-device-train-batch-size", "2", "--ppo-epochs", "2", "--max-new-tokens", "6",
         "--save-steps", "2"]


def test_ppo_from_the_command_line_resumes_exactly(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    result = run_ple(*FLAGS, "--max-steps", "4", "--output-dir", whole)
    assert result.returncode == 0, result.stderr[-1500:]
    assert yaml.safe_load((whole / "config.yaml").read_text())["method"] == "ppo"
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "reward_curves.png",
                 "adapter/adapter_model.safetensors", "value_head.safetensors"):
        assert (whole / name).is_file(), name

    result = run_ple(*FLAGS, "--max-steps", "2", "--output-dir", part)
    assert result.returncode == 0, result.stderr[-1500:]
    result = run_ple("train", "--resume", "--max-steps", "4", "--output-dir", part)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "ple: resuming after step 2" in result.stderr

    assert (whole / "samples.jsonl").read_bytes() == (part / "samples.jsonl").read_bytes()
    strip = lambda row: {k: v for k, v in row.items() if not k.startswith("seconds_")}  # noqa
    rows = [[strip(json.loads(line)) for line in open(d / "metrics.jsonl")]
            for d in (whole, part)]
    assert rows[0] == rows[1] and [r["optimizer_steps"] for r in rows[0]] == [4, 8, 12, 16]
    for name in ("adapter/adapter_model.safetensors", "value_head.safetensors"):
        a, b = load_file(str(whole / name)), load_file(str(part / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
