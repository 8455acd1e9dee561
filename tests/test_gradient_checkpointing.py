"""gradient_checkpointing: the layers' activations are recomputed in the backward pass, the
run is otherwise the same, and the key reaches TRL for the methods it trains."""

import json

import pytest
import torch
import transformers

from conftest import prompts, run_ple
from ple.config import load_config
from ple.models import load_policy, paper_lora
from ple.trainer import PLETrainer
from test_multiprocess import QUERIES, SEED, LengthReward, assert_close_rows, \
    assert_close_tensors, rows

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training


def train(tmp_path, name: str, checkpointing: bool) -> tuple[PLETrainer, int]:
    """2 steps of PLE on tiny; returns the trainer and how often the MLP of its first decoder
    layer ran forward in training mode (generation runs in eval mode). Its `forward` is
    counted, not hooked: module hooks do not run when the backward pass recomputes a layer."""
    cfg = load_config(None, {"model": "tiny", "task": "imdb", "max_steps": 2, "batch_size": 7,
                             "max_new_tokens": 8, "top_k": 1, "seed": SEED,
                             "learning_rate": 1e-2, "output_dir": str(tmp_path / name),
                             "gradient_checkpointing": checkpointing,
                             # A bf16 sampling copy would be a deep copy of the patched
                             # forward below, still counting the policy's layer.
                             "generation_dtype": "float32"})
    model, tokenizer = load_policy("tiny", seed=SEED)
    layer = next(m for m in model.modules() if type(m).__name__.endswith("DecoderLayer"))
    calls = []
    forward = layer.mlp.forward

    def counting(*args, **kwargs):
        calls.append(layer.mlp.training)
        return forward(*args, **kwargs)

    layer.mlp.forward = counting
    trainer = PLETrainer(model=model, processing_class=tokenizer, args=cfg,
                         train_dataset=prompts(QUERIES), reward_funcs=LengthReward(),
                         peft_config=paper_lora())
    trainer.train()
    return trainer, sum(calls)


def test_checkpointing_recomputes_activations_and_trains_the_same(tmp_path):
    plain, plain_calls = train(tmp_path, "plain", False)
    checkpointed, checkpointed_calls = train(tmp_path, "checkpointed", True)
    # Each training forward pass runs the layer again in the backward pass.
    assert plain_calls > 0 and checkpointed_calls == 2 * plain_calls
    assert rows(tmp_path / "checkpointed" / "samples.jsonl") == \
        rows(tmp_path / "plain" / "samples.jsonl")
    assert_close_rows(rows(tmp_path / "checkpointed" / "metrics.jsonl"),
                      rows(tmp_path / "plain" / "metrics.jsonl"))
    assert_close_tensors({n: p.detach() for n, p in checkpointed.trainable().items()},
                         {n: p.detach() for n, p in plain.trainable().items()})
    config = (tmp_path / "checkpointed" / "config.yaml").read_text()
    assert "activation_checkpointing: true" in config


def test_the_key_reaches_trl(tmp_path, monkeypatch):
    """ple passes its own key to TRL, on by default as TRL's own default."""
    enabled = []
    original = transformers.PreTrainedModel.activation_checkpointing_enable

    def recording(model, *args, **kwargs):
        enabled.append(True)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedModel, "activation_checkpointing_enable",
                        recording)
    data = tmp_path / "imdb.jsonl"
    review = "a warm, funny and moving film that I loved"
    data.write_text("".join(json.dumps({"text": f"Review {i}: {review}", "label": 1}) + "\n"
                            for i in range(4)))
    flags = ["--method", "sft", "--model", "tiny", "--data", data, "--max-steps", "1",
             "--batch-size", "2"]
    result = run_ple("train", *flags, "--gradient-checkpointing", "false",
                     "--output-dir", tmp_path / "off")
    assert result.returncode == 0, result.stderr[-2000:]
    assert enabled == []
    result = run_ple("train", *flags, "--output-dir", tmp_path / "on")
    assert result.returncode == 0, result.stderr[-2000:]
    assert enabled
    assert json.loads((tmp_path / "on" / "summary.json").read_text())["examples"] > 0
    assert torch.isfinite(torch.tensor([r["loss"] for r in rows(tmp_path / "on" /
                                                                 "metrics.jsonl")])).all()
