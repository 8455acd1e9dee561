"""The public Python API in TRL's shape: PLETrainer(model, args, train_dataset, reward_funcs,
...), README's quick start as written, TRL-style reward functions and conversational data,
callbacks, config.yaml that `ple eval` and `--resume` can use, and the model card."""

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_ple, trainable_snapshot, unchanged_parameters

QUERIES = ["The film opens with", "I expected more from", "This is the story of",
           "Nobody told me that"]


def small(tmp_path, **fields):
    from ple import PLEConfig

    return PLEConfig(**{"output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 2,
                        "max_new_tokens": 6, **fields})


@pytest.mark.slow
def test_readme_python_quick_start_runs_as_written(tmp_path, monkeypatch):
    """The first ```python block of README.md, on `tiny` instead of the real model."""
    block = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    assert "PLETrainer(" in block and "reward_funcs=" in block and "train_dataset=" in block
    code = block.replace('"default"', '"tiny"').replace("max_steps=30", "max_steps=1")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    out = next(Path(tmp_path).glob("runs/*"))
    assert (out / "metrics.jsonl").read_text().count("\n") == 1
    assert (out / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_grpo_style_reward_function_and_conversational_dataset(tmp_path):
    """A reward function written for TRL's GRPOTrainer (prompts, completions, **kwargs with
    the dataset's other columns) and a dataset of conversations train PLE unchanged; a
    `principle` column replaces the principle for its row."""
    from ple import PLETrainer
    from ple.models import paper_lora

    seen = []

    def grpo_reward(prompts, completions, completion_ids, **kwargs):
        seen.append((prompts, completions, completion_ids, kwargs))
        return [len(c[0]["content"]) / 10 + kwargs["bonus"][i]
                for i, c in enumerate(completions)]

    dataset = [{"prompt": [{"role": "user", "content": f"Tell me about film {i}."}],
                "bonus": float(i), "principle": "Be kind." if i == 0 else None}
               for i in range(3)]
    from datasets import Dataset

    trainer = PLETrainer(model="tiny", args=small(tmp_path), train_dataset=Dataset.from_list(
        dataset), reward_funcs=grpo_reward, peft_config=paper_lora())
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert unchanged_parameters(trainer.model, before) == []
    prompts, completions, ids, kwargs = seen[0]
    assert prompts[0][0]["role"] == "user" and prompts[0][0]["content"].startswith("Tell me")
    assert completions[0][0]["role"] == "assistant" and isinstance(ids[0][0], int)
    assert set(kwargs) == {"bonus"} and len(kwargs["bonus"]) == len(completions)
    assert "Be kind.\n\nTell me about film 0." in trainer.prompter.text(
        "\n\nHuman: Tell me about film 0.\n\nAssistant:", guided=True)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert rows[0]["query"].startswith("\n\nHuman: Tell me about film")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["reward"] == \
        "grpo_reward"


def test_weighted_reward_functions(tmp_path):
    from ple import PLETrainer

    def one(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    def length(completions, **kwargs):
        return [float(len(c)) for c in completions]

    trainer = PLETrainer(model="tiny", args=small(tmp_path, reward_weights=[2.0, 0.5]),
                         train_dataset=[{"prompt": q} for q in QUERIES],
                         reward_funcs=[one, length])
    scores = trainer.reward.score(["q", "q"], ["ab", "abcd"])
    assert scores == [2.0 + 1.0, 2.0 + 2.0]
    assert trainer.args.reward == "2*one + 0.5*length"


@pytest.mark.slow
def test_callbacks_see_each_step_and_can_stop_training(tmp_path):
    from transformers import TrainerCallback

    from ple import PLETrainer

    class Recorder(TrainerCallback):
        def __init__(self):
            self.events = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.events.append("begin")

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.events.append(("log", state.global_step, "loss" in logs))

        def on_save(self, args, state, control, **kwargs):
            self.events.append(("save", state.global_step))

        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2

        def on_train_end(self, args, state, control, **kwargs):
            self.events.append("end")

    recorder = Recorder()
    trainer = PLETrainer(model="tiny", args=small(tmp_path, max_steps=5, save_steps=10),
                         train_dataset=[{"prompt": q} for q in QUERIES],
                         reward_funcs="vader", callbacks=[recorder])
    summary = trainer.train()
    # As transformers.Trainer: a stop asked for by a callback ends training without a
    # checkpoint; the last log is Trainer's summary of the run.
    assert recorder.events == ["begin", ("log", 1, True), ("log", 2, True), ("log", 2, False),
                               "end"]
    assert summary["steps"] == 2
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_python_run_can_be_evaluated_and_resumed_by_the_cli(tmp_path):
    """config.yaml records what ran (here the non-default model `tiny` and the reward), so
    `ple eval --adapter` and `ple train --resume` work on a run started from Python."""
    from ple import PLETrainer
    from ple.models import paper_lora

    out = tmp_path / "run"
    trainer = PLETrainer(model="tiny", args=small(tmp_path, save_steps=1),
                         reward_funcs="vader", peft_config=paper_lora())
    trainer.train()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["model"], saved["reward"], saved["use_lora"]) == ("tiny", "vader", True)
    card = (out / "adapter" / "README.md").read_text()
    assert "# PLE on imdb" in card and "`tiny`" in card and "| learning_rate |" in card
    result = run_ple("eval", "--model", "tiny", "--adapter", out / "adapter",
                     "--max-new-tokens", "4", "-n", "2", "--output-dir", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["adapter_tokenizer"] == \
        f"same model as {out / 'config.yaml'}"
    result = run_ple("train", "--resume", "--output-dir", out, "--max-steps", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming after step 2" in result.stderr
    assert [json.loads(r)["step"] for r in open(out / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.slow
def test_resume_from_a_named_checkpoint(tmp_path):
    from ple import PLETrainer
    from ple.errors import UserError

    args = small(tmp_path, save_steps=1, max_steps=3)
    PLETrainer(model="tiny", args=args, reward_funcs="vader").train()
    out = tmp_path / "run"
    trainer = PLETrainer(model="tiny", args=args, reward_funcs="vader")
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert [json.loads(r)["step"] for r in open(out / "metrics.jsonl")] == [1, 2, 3]
    with pytest.raises(UserError, match="not a complete checkpoint"):
        PLETrainer(model="tiny", args=args, reward_funcs="vader").train(
            resume_from_checkpoint=str(tmp_path / "elsewhere"))


def test_config_is_validated_when_made():
    from ple import PLEConfig

    with pytest.raises(ValueError, match="config key `alpha` = 1.5: must be in"):
        PLEConfig(alpha=1.5)


def test_eval_steps_without_held_out_queries_is_refused(tmp_path):
    from ple import PLETrainer
    from ple.errors import UserError

    with pytest.raises(UserError, match="eval_steps`: needs held-out queries"):
        PLETrainer(model="tiny", args=small(tmp_path, eval_steps=1), reward_funcs="vader")


def test_eval_dataset_is_measured_before_and_after(tmp_path):
    from ple import PLETrainer

    trainer = PLETrainer(model="tiny", args=small(tmp_path, max_steps=1), reward_funcs="vader",
                         eval_dataset=[{"prompt": "A held-out opening"}])
    summary = trainer.train()
    assert summary["eval_before"]["n"] == summary["eval_after"]["n"] == 1
    assert summary["eval_after"]["samples"][0]["query"] == "A held-out opening"


def test_bad_dataset_rows_name_the_row():
    from ple.errors import UserError
    from ple.inputs import dataset_queries

    with pytest.raises(UserError, match="train_dataset row 2: needs a `prompt` column"):
        dataset_queries([{"prompt": "fine"}, {"text": "x"}], "train_dataset")
    with pytest.raises(UserError, match="row 1: a conversational prompt must end with a user"):
        dataset_queries([{"prompt": [{"role": "assistant", "content": "hi"}]}], "train_dataset")
    with pytest.raises(UserError, match="row 2: repeats the prompt of an earlier row"):
        dataset_queries([{"prompt": "a", "k": 1}, {"prompt": "a", "k": 2}], "train_dataset")


@pytest.mark.slow
def test_importing_ple_changes_no_global_state():
    """No matplotlib backend chosen, no warning filter, logging handler or level set."""
    import subprocess
    import sys

    # The libraries ple builds on set their own filters when imported: those come first.
    code = ("import logging, warnings, torch, transformers, peft, trl, accelerate, datasets, "
            "matplotlib, vaderSentiment, sacrebleu; filters = list(warnings.filters); "
            "import ple; from ple import PLETrainer, PLEConfig, RAFTTrainer, PPOTrainer; "
            "import ple.plot, ple.compare.report, ple.annotate.report, sys; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert list(warnings.filters) == filters, 'warning filters changed'; "
            "assert logging.getLogger('ple').handlers == [], 'a handler on ple'; "
            "assert logging.root.handlers == [], 'root logging configured'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_tensorboard_gets_every_step_and_none_writes_nothing(tmp_path):
    """report_to through Trainer's integrations: TensorBoard's event files hold each step's
    metrics (read back offline); report_to none writes no event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ple import PLETrainer

    trainer = PLETrainer(model="tiny", args=small(tmp_path, report_to="tensorboard"),
                         reward_funcs="vader")
    trainer.train()
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    events = next((tmp_path / "run" / "runs").rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    logged = accumulator.Scalars("train/reward_mean")
    assert [e.step for e in logged] == [1, 2]
    assert [e.value for e in logged] == pytest.approx([r["reward_mean"] for r in rows])
    # Nested dicts flattened (a purity is null when no pair is that far apart; its count
    # is always a number).
    assert "train/purity_n/0.2" in accumulator.Tags()["scalars"]

    quiet = tmp_path / "quiet"
    PLETrainer(model="tiny", args=small(quiet), reward_funcs="vader").train()
    assert not list(quiet.rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_completions_table_goes_to_wandb(tmp_path, monkeypatch):
    """With wandb in report_to, every logged step's samples go to wandb as a `completions`
    table (as GRPOTrainer's log_completions does); wandb itself is stood in for."""
    import sys
    import types

    from ple import PLETrainer

    tables = []
    wandb = types.ModuleType("wandb")
    wandb.Table = lambda columns, data: (columns, data)
    wandb.log = lambda values: tables.append(values["completions"])
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    trainer = PLETrainer(model="tiny", args=small(tmp_path), reward_funcs="vader")
    trainer.args.report_to = ["wandb"]  # Trainer's own wandb callback stays out of it
    trainer.train()
    samples = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert len(tables) == 2
    columns = tables[0][0]
    assert {"query", "response", "response_prompt", "reward", "reward_prompt", "branch",
            "w"} <= set(columns)
    assert [dict(zip(columns, row)) for _, data in tables for row in data] == samples


def test_unknown_tracker_is_refused():
    from ple import PLEConfig

    with pytest.raises(ValueError, match="`report_to` = 'tensorbored': must be none or"):
        PLEConfig(report_to="tensorbored")


def test_a_tracker_that_is_not_installed_is_refused(monkeypatch):
    import importlib.util

    from ple import PLEConfig

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "wandb" else real(name, *rest))
    with pytest.raises(ValueError, match="`report_to` = 'wandb': wandb is not installed"):
        PLEConfig(report_to="wandb")
