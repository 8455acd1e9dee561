"""ple's trainers are transformers.Trainers, so TrainingArguments' fields mean what they mean
there: the learning-rate schedule, logging_steps, save_total_limit, stock callbacks."""

import json

import pytest
import transformers

from ple import PLEConfig, PLETrainer, RAFTTrainer
from ple.baselines.ppo import PPOTrainer

QUERIES = ["The film opens with", "I expected more from", "Nobody told me", "At last a"]


def small(tmp_path, **fields):
    return PLEConfig(**{"output_dir": str(tmp_path / "run"), "max_steps": 4, "batch_size": 2,
                        "max_new_tokens": 6, "save_steps": 10, **fields})


def rows(tmp_path) -> list[dict]:
    return [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]


def test_the_trainers_are_transformers_trainers_and_take_grpo_s_arguments_in_order():
    for trainer in (PLETrainer, RAFTTrainer, PPOTrainer):
        assert issubclass(trainer, transformers.Trainer)
        assert isinstance(trainer.config_class(), transformers.TrainingArguments)
    import inspect

    from trl import GRPOTrainer

    ours = list(inspect.signature(PLETrainer.__init__).parameters)[1:4]
    assert ours == list(inspect.signature(GRPOTrainer.__init__).parameters)[1:4] == \
        ["model", "reward_funcs", "args"]


@pytest.mark.slow
def test_positional_arguments_as_grpo_trainer(tmp_path):
    trainer = PLETrainer("tiny", "vader", small(tmp_path, max_steps=1),
                         [{"prompt": q} for q in QUERIES])
    assert trainer.reward.name == "vader" and trainer.queries == QUERIES


@pytest.mark.slow
def test_cosine_schedule_with_warmup_changes_the_logged_learning_rate(tmp_path):
    PLETrainer("tiny", "vader", small(tmp_path, lr_scheduler_type="cosine", warmup_steps=2,
                                      learning_rate=1e-3)).train()
    rates = [r["learning_rate"] for r in rows(tmp_path)]
    # Trainer's cosine with 2 warm-up steps over 4: 0, 1/2, then down the cosine.
    assert rates[0] == 0.0 and rates[1] == pytest.approx(5e-4)
    assert rates[2] == pytest.approx(1e-3) and rates[3] == pytest.approx(5e-4)


@pytest.mark.slow
def test_constant_schedule_by_default(tmp_path):
    PLETrainer("tiny", "vader", small(tmp_path)).train()
    assert {r["learning_rate"] for r in rows(tmp_path)} == {3e-4}


@pytest.mark.slow
def test_logging_steps_and_save_total_limit(tmp_path):
    logged = []

    class Recorder(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if "loss" in logs:
                logged.append((state.global_step, dict(logs)))

    PLETrainer("tiny", "vader", small(tmp_path, logging_steps=2, save_steps=1,
                                      save_total_limit=2), callbacks=[Recorder()]).train()
    every = rows(tmp_path)
    assert [r["step"] for r in every] == [1, 2, 3, 4]  # metrics.jsonl: every step
    assert [step for step, _ in logged] == [2, 4]  # the trackers: every logging_steps
    # ... each the mean of the steps since the last log.
    assert logged[0][1]["reward_mean"] == pytest.approx(
        (every[0]["reward_mean"] + every[1]["reward_mean"]) / 2)
    kept = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))
    assert kept == ["checkpoint-3", "checkpoint-4"]


@pytest.mark.slow
def test_early_stopping_callback_stops_on_the_held_out_reward(tmp_path):
    args = small(tmp_path, max_steps=6, eval_queries=4, eval_steps=1, save_steps=1,
                 metric_for_best_model="eval_reward_mean", load_best_model_at_end=True)
    trainer = PLETrainer("tiny", "vader", args, callbacks=[
        transformers.EarlyStoppingCallback(early_stopping_patience=1,
                                           early_stopping_threshold=1.0)])
    summary = trainer.train()
    # No evaluation improves the held-out reward by 1.0: the second one stops the run.
    assert summary["steps"] == 2
    assert [r["step"] for r in rows(tmp_path)] == [1, 2]
    assert all("eval_reward_mean" in r for r in rows(tmp_path))
