"""PLETrainer on the tiny random model."""

import json
import math
import statistics

import pytest
import torch

from conftest import one_update, prompts, trainable_snapshot, unchanged_parameters
from peft import PeftModel

from ple.config import load_config
from ple.models import load_policy, paper_lora
from ple.rewards.function import FunctionReward
from ple.rewards.vader import VaderReward
from ple.trainer import PLETrainer

QUERIES = ["The film opens with", "I expected more from", "This is the story of",
           "Nobody told me that", "The director clearly"]


def make_trainer(tmp_path, reward=None, **overrides):
    cfg = load_config(None, {"model": "tiny", "task": "imdb", "max_steps": 2,
                             "batch_size": 4, "max_new_tokens": 8,
                             "output_dir": str(tmp_path / "run"), **overrides})
    return PLETrainer(model="tiny", args=cfg, reward_funcs=reward or VaderReward(),
                      train_dataset=prompts(QUERIES),
                      peft_config=paper_lora() if cfg.use_lora else None)


@pytest.mark.slow
def test_loss_logged_and_every_lora_parameter_changed(tmp_path):
    trainer = make_trainer(tmp_path, replay_window=0)
    before = trainable_snapshot(trainer.model)
    assert before and all("lora_" in n for n in before)
    trainer.train()
    assert unchanged_parameters(trainer.model, before) == []
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(isinstance(r["loss"], float) and r["loss"] == r["loss"] for r in rows)
    # Algorithm 1 replays all of D_train: the buffer grows by a batch each step.
    assert [r["buffer_size"] for r in rows] == [4, 8]
    assert [r["n_rank"] + r["n_weighted"] for r in rows] == [4, 8]
    assert rows[-1]["generated_responses"] == 16 and rows[-1]["optimizer_steps"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("use_lora", [True, False])
def test_kl_penalty_is_zero_at_the_base_model_and_logged_after(tmp_path, use_lora):
    """kl_coef: the reference is the base model (LoRA disabled, or a frozen copy under full
    fine-tuning), so the penalty is 0 at the start and grows once the policy moves; every
    trainable parameter still changes."""
    trainer = make_trainer(tmp_path, kl_coef=0.5, max_steps=3, use_lora=use_lora,
                           learning_rate=1e-2)
    from ple.sequences import pack, response_token_logprobs

    batch = pack([[1, 2, 3]], [[4, 5, 6, 7]], trainer.tokenizer.pad_token_id)
    with torch.no_grad():
        start = response_token_logprobs(trainer.model, batch)
    assert torch.equal(trainer.reference_logprobs(batch), start)
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert unchanged_parameters(trainer.model, before) == []
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(r["loss_kl"] >= 0 for r in rows) and rows[-1]["loss_kl"] > 0
    assert torch.equal(trainer.reference_logprobs(batch), start)  # the reference stays put
    assert not torch.equal(response_token_logprobs(trainer.model, batch).detach(), start)


@pytest.mark.slow
def test_full_finetuning_changes_every_weight(tmp_path):
    trainer = make_trainer(tmp_path, use_lora=False, learning_rate=1e-2)
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert unchanged_parameters(trainer.model, before) == []
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_replay_window_bounds_what_is_trained(tmp_path):
    trainer = make_trainer(tmp_path, replay_window=1, max_steps=3)
    trainer.train()
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["buffer_size"] for r in rows] == [4, 8, 12]
    assert [r["n_rank"] + r["n_weighted"] for r in rows] == [4, 4, 4]


@pytest.mark.slow
def test_adapter_loads_with_peft(tmp_path):
    make_trainer(tmp_path, max_steps=1).train()
    base, _ = load_policy("tiny", seed=0)
    model = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter")
    assert any("lora_A" in n for n, _ in model.named_parameters())


@pytest.mark.slow
def test_y_and_y_prime_are_scored_against_the_plain_query(tmp_path, monkeypatch):
    """Alg. 1 line 9: s' = R(x, y'), never R([p, x], y')."""
    seen = []

    class Recorder:
        name = "recorder"

        def score(self, queries, responses):
            seen.extend(queries)
            return [0.0] * len(responses)

    make_trainer(tmp_path, reward=Recorder(), max_steps=1).train()
    assert seen and set(seen) <= set(QUERIES)


def test_non_finite_reward_stops_naming_the_query(tmp_path, monkeypatch):
    import types
    import sys

    module = types.ModuleType("nan_reward")
    module.score = lambda prompts, completions: [float("nan")] * len(completions)
    monkeypatch.setitem(sys.modules, "nan_reward", module)
    trainer = make_trainer(tmp_path, reward=FunctionReward("nan_reward:score"))
    from ple.errors import UserError

    with pytest.raises(UserError, match="gave nan for query"):
        trainer.train()


def test_sft_warmup_trains_on_supervised_pairs(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"review {i} was great fun to watch with "
                                                  f"my whole family", "label": 1})
                              for i in range(4)) + "\n")
    cfg = load_config(None, {"model": "tiny", "task": "imdb", "max_steps": 1, "batch_size": 2,
                             "max_new_tokens": 4, "sft_data": str(data), "sft_steps": 2,
                             "output_dir": str(tmp_path / "run")})
    trainer = PLETrainer(model="tiny", args=cfg, reward_funcs=VaderReward(),
                         train_dataset=prompts(QUERIES), peft_config=paper_lora())
    assert len(trainer.sft_pairs) == 4
    before = trainable_snapshot(trainer.model)
    trainer._sft_warmup()
    assert unchanged_parameters(trainer.model, before) == []


def test_batch_larger_than_query_set_cycles_through_it(tmp_path):
    trainer = make_trainer(tmp_path, batch_size=7, max_steps=1)
    batch = trainer._queries_for_step(1)
    assert len(batch) == 7 and set(batch) == set(QUERIES)
    # Every query once per epoch: steps 1-5 of batch 7 cover 7 epochs of 5 queries.
    seen = [q for step in range(1, 6) for q in trainer._queries_for_step(step)]
    assert all(seen[i:i + 5].count(q) == 1 for i in range(0, 35, 5) for q in QUERIES)


@pytest.mark.slow
def test_ablation_without_rank_loss_uses_two_plain_samples(tmp_path):
    trainer = make_trainer(tmp_path, ablation="no_rank", max_steps=1)
    prompts_seen = []
    real = trainer.prompter.ids

    def spy(query, guided=False):
        prompts_seen.append(guided)
        return real(query, guided)

    trainer.prompter.ids = spy
    trainer.train()
    assert prompts_seen and not any(prompts_seen)  # the principle is never used
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert {r["branch"] for r in rows} == {"weighted"}
    assert all(r["w"] == pytest.approx(-r["w_prompt"]) for r in rows)


@pytest.mark.slow
def test_ablation_without_weighted_sft_trains_only_rank_pairs(tmp_path):
    import types
    import sys

    # y (first half) always scores 0, y' always 1: every pair is over tau -> rank branch.
    module = types.ModuleType("halves_reward")
    module.score = lambda prompts, completions: (
        [0.0] * (len(completions) // 2) + [1.0] * (len(completions) // 2))
    sys.modules["halves_reward"] = module
    trainer = make_trainer(tmp_path, reward=FunctionReward("halves_reward:score"),
                           ablation="no_wsft")
    trainer.train()
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["n_updates"] for r in rows] == [1, 1] and rows[0]["loss_wsft"] == 0.0
    # Now every pair is "similar": nothing may be trained at all.
    module.score = lambda prompts, completions: [0.0] * len(completions)
    trainer = make_trainer(tmp_path / "b", reward=FunctionReward("halves_reward:score"),
                           ablation="no_wsft")
    before = trainable_snapshot(trainer.model)
    trainer.train()
    rows = [json.loads(line) for line in open(tmp_path / "b" / "run" / "metrics.jsonl")]
    assert [r["n_updates"] for r in rows] == [0, 0]
    assert len(unchanged_parameters(trainer.model, before)) == len(before)


def by_index_reward(monkeypatch, plain: list[float], guided: list[float]) -> FunctionReward:
    """A reward that gives the i-th y of a step plain[i] and the i-th y' guided[i]."""
    import sys
    import types

    module = types.ModuleType("by_index_reward")
    module.score = lambda prompts, completions: (
        plain[:len(completions) // 2] + guided[:len(completions) // 2])
    monkeypatch.setitem(sys.modules, "by_index_reward", module)
    return FunctionReward("by_index_reward:score")


def run_rows(trainer, tmp_path) -> list[dict]:
    trainer.train()
    return [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]


@pytest.mark.slow
def test_logistic_rank_loss_starts_at_log_2_and_trains_every_parameter(tmp_path, monkeypatch):
    """rank_loss logistic: at the first update the policy is the reference (LoRA's B is 0),
    so every ranked pair's loss is -log sigmoid(0) = log 2."""
    reward = by_index_reward(monkeypatch, [0.0] * 4, [1.0] * 4)  # every pair ranked
    trainer = make_trainer(tmp_path, reward=reward, rank_loss="logistic", rank_beta=0.5)
    before = trainable_snapshot(trainer.model)
    rows = run_rows(trainer, tmp_path)
    assert unchanged_parameters(trainer.model, before) == []
    assert [r["n_rank"] for r in rows] == [4, 4]
    assert rows[0]["loss_rank"] == pytest.approx(math.log(2), abs=1e-6)
    assert rows[1]["loss_rank"] != pytest.approx(math.log(2), abs=1e-6)
    # Under full fine-tuning the reference is a frozen copy of the base model.
    full = make_trainer(tmp_path / "full", rank_loss="logistic", use_lora=False)
    assert full.frozen_base is not None


@pytest.mark.slow
def test_wsft_coef_scales_eq4_and_zero_is_the_no_wsft_ablation(tmp_path, monkeypatch):
    # Pairs 0 and 2 clear tau0 = 0.2 (rank), 1 and 3 do not (weighted).
    reward = by_index_reward(monkeypatch, [0.0] * 4, [1.0, 0.1, 1.0, 0.1])
    runs = {}
    for name, settings in {"paper": {}, "0.3": {"wsft_coef": 0.3}, "0": {"wsft_coef": 0.0},
                           "no_wsft": {"ablation": "no_wsft"}}.items():
        trainer = make_trainer(tmp_path / name, reward=reward, **settings)
        before = trainable_snapshot(trainer.model)
        runs[name] = run_rows(trainer, tmp_path / name)
        assert unchanged_parameters(trainer.model, before) == [], name
    # Step 1 trains all four pairs in one update from the same weights and samples.
    assert runs["paper"][0]["n_weighted"] == 2 and runs["paper"][0]["loss_wsft"] != 0
    assert runs["0.3"][0]["loss_wsft"] == pytest.approx(0.3 * runs["paper"][0]["loss_wsft"])
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("seconds_")}  # noqa
                          for r in rows]
    assert strip(runs["0"]) == strip(runs["no_wsft"])
    assert runs["0"][0]["loss_wsft"] == 0.0


@pytest.mark.slow
def test_positive_half_of_eq4_pushes_the_better_response_up(tmp_path, monkeypatch):
    """wsft_positive_only, every pair weighted (y' better by 0.1 <= tau), no anchor: the only
    push is Eq. 4's on y', so one update raises its log-prob."""
    from ple.buffer import ScoredPair

    trainer = make_trainer(tmp_path, wsft_positive_only=True, sft_anchor=0.0,
                           learning_rate=1e-2)
    prompt = trainer.prompter.ids(QUERIES[0])
    pairs = [ScoredPair(1, QUERIES[0], prompt, [100 + i, 200, 300], [400 + i, 500, 600],
                        0.0, 0.1) for i in range(4)]

    def logp_prompt():
        with torch.no_grad():
            return sum(trainer._pair_losses(pairs, 0.2)["logp_prompt"])

    start = logp_prompt()
    trained = one_update(trainer, pairs, 0.2)
    assert trained["n_weighted"] == 4 and trained["loss_wsft"] > 0
    assert logp_prompt() > start


@pytest.mark.slow
def test_tau_in_spreads_of_the_first_steps_gaps(tmp_path, monkeypatch):
    reward = by_index_reward(monkeypatch, [0.0, 0.5, 0.0, 0.2], [1.0, 0.5, 0.3, 0.0])
    trainer = make_trainer(tmp_path, reward=reward, tau_scale="spread", tau0=0.6, alpha=0.8,
                           max_steps=3)
    before = trainable_snapshot(trainer.model)
    rows = run_rows(trainer, tmp_path)
    assert unchanged_parameters(trainer.model, before) == []
    spread = statistics.stdev([1.0, 0.0, 0.3, -0.2])
    assert [r["tau_spread"] for r in rows] == [pytest.approx(spread)] * 3
    assert [r["tau"] for r in rows] == pytest.approx([0.6 * spread * 0.8 ** t for t in range(3)])
    samples = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert all((s["branch"] == "rank") == (s["reward_prompt"] - s["reward"] > s["tau"])
               for s in samples)
    assert [r["n_rank"] for r in rows] == [1, 2, 2]  # the gap 0.3 clears tau from step 2


def test_principle_name_is_what_guided_prompts_carry(tmp_path):
    from ple.tasks import IMDB_FAN_VOICE

    trainer = make_trainer(tmp_path, principle_name="fan-voice")
    assert trainer.prompter.principle == IMDB_FAN_VOICE
    assert IMDB_FAN_VOICE in trainer.prompter.text(QUERIES[0], guided=True)
    assert IMDB_FAN_VOICE not in trainer.prompter.text(QUERIES[0], guided=False)
