"""Level-set purity (Definition 5.1) logged per step, and evaluation every K steps."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import one_update, prompts, run_ple
from ple.buffer import ScoredPair
from ple.config import load_config
from ple.errors import UserError
from ple.models import paper_lora
from ple.purity import level_set_purity
from ple.sequences import pack, response_token_logprobs
from ple.trainer import PLETrainer
from ple.rewards.vader import VaderReward

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training

# Rewards spread over [0, 1.2] by response length, so the margins below are all reached
# by some pairs and not by others.
CHARS_REWARD = "def score(prompts, completions):\n    return [len(c) / 40 for c in completions]\n"
MARGINS = [0.0, 0.1, 0.3, 5.0]  # nothing the reward gives reaches 5.0


def test_purity_by_hand():
    s = [0.0, 0.0, 0.5, 0.2, 0.9]
    s_prompt = [0.1, 0.5, 0.5, 1.0, 0.0]  # gaps 0.1, 0.5, 0.0, 0.8, -0.9
    logp = [-2.0, -1.0, -1.0, -3.0, -1.0]
    logp_prompt = [-1.0, -1.5, -2.0, -1.0, -3.0]  # y' more likely on pairs 0 and 3 only
    assert level_set_purity(s, s_prompt, logp, logp_prompt, [0.0, 0.1, 0.5, 0.9, -1.0]) == {
        0.0: (2 / 4, 4),  # the tie (gap 0.0) belongs to L(0, R)
        0.1: (2 / 3, 3),  # s' - s >= e, inclusive
        0.5: (1 / 2, 2),
        0.9: (None, 0),   # no pair reaches it: undefined, never 0
        -1.0: (2 / 5, 5),
    }


def test_equal_logprobs_are_not_pure():
    """Definition 5.1 asks pi(y'|x) > pi(y|x), strictly."""
    assert level_set_purity([0.0], [1.0], [-1.0], [-1.0], [0.5]) == {0.5: (0.0, 1)}


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        level_set_purity([0.0, 1.0], [1.0], [-1.0], [-1.0], [0.5])


@pytest.mark.parametrize("ablation", [None, "no_rank"])
def test_trainer_logs_the_purity_of_the_pairs_it_trains(tmp_path, ablation):
    """Purity comes from the log-probs of the training forward pass itself: they equal the
    model's log-probs before the update, y and y' not swapped (the no_rank ablation too)."""
    cfg = load_config(None, {"model": "tiny", "output_dir": str(tmp_path / "run"),
                             "per_device_train_batch_size": 8, "ablation": ablation,
                             "purity_margins": MARGINS})
    trainer = PLETrainer(model="tiny", args=cfg, reward_funcs=VaderReward(),
                         train_dataset=prompts(["The film opens with"]),
                         peft_config=paper_lora())
    gen = torch.Generator().manual_seed(0)
    tokens = lambda n: torch.randint(5, 1000, (n,), generator=gen).tolist()  # noqa: E731
    pairs = [ScoredPair(1, "q", tokens(6), tokens(1 + i), tokens(7 - i), 0.1 * i, 0.5 - 0.2 * i)
             for i in range(6)]
    batch = pack([p.prompt_ids for p in pairs] * 2,
                 [p.response_ids for p in pairs] + [p.guided_ids for p in pairs],
                 trainer.tokenizer.pad_token_id)
    with torch.no_grad():
        logps = response_token_logprobs(trainer.model, batch)
    normalised = (logps.sum(-1) / batch["response_mask"].sum(-1)).tolist()
    expected = level_set_purity([p.reward for p in pairs], [p.reward_prompt for p in pairs],
                                normalised[:6], normalised[6:], MARGINS)
    row = one_update(trainer, pairs, 0.0)
    assert row["n_updates"] == 1
    assert row["purity"] == {str(e): share for e, (share, _) in expected.items()}
    assert row["purity_n"] == {"0.0": 2, "0.1": 2, "0.3": 1, "5.0": 0}
    # L(0.3, R) holds one pair, so its share is 0 or 1 and swapping y and y' would flip it.
    assert row["purity"]["0.3"] in (0.0, 1.0) and row["purity"]["5.0"] is None


def run_train(tmp_path, name, *flags):
    out = tmp_path / name
    result = run_ple("train", "--model", "tiny", "--max-steps", "4", "--batch-size", "4",
                     "--max-new-tokens", "10", "--replay-window", "1", "--reward",
                     "chars:score", "--purity-margins", *map(str, MARGINS),
                     "--output-dir", out, *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same PLE run twice: with evaluation every 2 steps, and with no evaluation."""
    tmp = tmp_path_factory.mktemp("purity")
    (tmp / "chars.py").write_text(CHARS_REWARD)
    return (run_train(tmp, "eval", "--eval-queries", "3", "--eval-steps", "2"),
            run_train(tmp, "plain"))


def rows_of(out, name="metrics.jsonl"):
    return [json.loads(line) for line in open(out / name)]


def test_purity_in_metrics_matches_the_samples(runs):
    out = runs[0]
    rows, samples = rows_of(out), rows_of(out, "samples.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        # replay_window 1: the pairs trained at a step are exactly the ones it sampled.
        mine = [s for s in samples if s["step"] == row["step"]]
        assert len(mine) == 4
        for e in MARGINS:
            n = sum(s["reward_prompt"] - s["reward"] >= e for s in mine)
            assert row["purity_n"][str(e)] == n
            share = row["purity"][str(e)]
            assert share is None if n == 0 else share * n == pytest.approx(round(share * n))
    assert all(r["purity_n"]["5.0"] == 0 and r["purity"]["5.0"] is None for r in rows)
    assert any(0 < r["purity_n"]["0.1"] < 4 for r in rows)  # the margins do separate pairs
    assert (out / "purity.png").stat().st_size > 10_000


def test_eval_every_k_steps_logs_the_held_out_numbers(runs):
    out = runs[0]
    keys = {"eval_n", "eval_reward_mean", "eval_reward_se", "eval_base_perplexity",
            "eval_distinct_1", "eval_distinct_2", "eval_assistant_speak", "eval_kl_mean",
            "eval_kl_se"}
    rows = rows_of(out)
    assert [r["step"] for r in rows if keys <= r.keys()] == [2, 4]
    assert not any(k.startswith("eval_") for r in rows if r["step"] in (1, 3) for k in r)
    # The last step's evaluation is the after-training one: same model, same seed.
    after = json.loads((out / "summary.json").read_text())["eval_after"]
    assert rows[-1]["eval_n"] == 3
    assert rows[-1]["eval_reward_mean"] == after["reward_mean"]
    assert rows[-1]["eval_base_perplexity"] == after["base_perplexity"]
    # KL from the base: the fresh adapter (B = 0) is the base exactly; 4 steps moved it.
    before = json.loads((out / "summary.json").read_text())["eval_before"]
    assert (before["kl_mean"], before["kl_se"]) == (0.0, 0.0)
    assert rows[-1]["eval_kl_mean"] == after["kl_mean"] != 0.0
    assert not any(k.startswith("eval_") for r in rows_of(runs[1]) for k in r)


def test_evaluating_does_not_change_training(runs):
    with_eval, without = runs
    assert (with_eval / "samples.jsonl").read_bytes() == (without / "samples.jsonl").read_bytes()
    a = load_file(str(with_eval / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(without / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda r: {k: v for k, v in r.items()  # noqa: E731
                       if not k.startswith(("eval_", "seconds_"))}
    assert [strip(r) for r in rows_of(with_eval)] == [strip(r) for r in rows_of(without)]


@pytest.mark.parametrize("method,flags", [
    ("raft", ["--raft-k", "2"]), ("ppo", []),
    ("rloo", ["--learning-rate", "1e-2"]),
    ("sft", ["--data", "SFT"]),
])
def test_every_method_evaluates_every_k_steps(method, flags, tmp_path):
    (tmp_path / "chars.py").write_text(CHARS_REWARD)
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"text": f"Review {i}: a warm, funny and moving film "
                                               "that I loved from start to end",
                                       "label": 1}) + "\n" for i in range(6)))
    flags = [str(sft) if f == "SFT" else f for f in flags]
    out = tmp_path / method
    result = run_ple("train", "--method", method, "--model", "tiny", "--max-steps", "3",
                     "--batch-size", "2", "--max-new-tokens", "6", "--reward", "chars:score",
                     "--eval-queries", "2", "--eval-steps", "2", "--output-dir", out, *flags,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = rows_of(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    # Every eval_steps and after the last step, as transformers.Trainer evaluates.
    assert [r["step"] for r in rows if "eval_reward_mean" in r] == [2, 3]
    assert rows[1]["eval_n"] == 2 and rows[1]["eval_base_perplexity"] > 1


def test_rloo_with_evaluation_trains_the_same(tmp_path):
    """TRL samples while training too: the evaluation in its callback must not shift that."""
    (tmp_path / "chars.py").write_text(CHARS_REWARD)
    outs = []
    for name, flags in (("eval", ["--eval-queries", "2", "--eval-steps", "1"]), ("plain", [])):
        outs.append(tmp_path / name)
        result = run_ple("train", "--method", "rloo", "--model", "tiny", "--max-steps", "3",
                         "--batch-size", "2", "--max-new-tokens", "6", "--learning-rate",
                         "1e-2", "--reward", "chars:score", "--output-dir", outs[-1], *flags,
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (outs[0] / "samples.jsonl").read_bytes() == (outs[1] / "samples.jsonl").read_bytes()
    a, b = (load_file(str(o / "adapter" / "adapter_model.safetensors")) for o in outs)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overrides,message", [
    ({"eval_steps": -1, "eval_queries": 2}, "config key `eval_steps` = -1.0: must be >= 0"),
    ({"purity_margins": []}, "`purity_margins` = []: must be one or more distinct numbers"),
    ({"purity_margins": [0.1, -0.2]}, "`purity_margins` = [0.1, -0.2]: must be one or more"),
    ({"purity_margins": [0.1, 0.1]}, "`purity_margins` = [0.1, 0.1]: must be one or more"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(UserError) as e:
        load_config(None, overrides)
    assert message in str(e.value)


def test_margins_from_yaml_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("purity_margins: [0, 0.25]\n")
    assert load_config(str(path)).purity_margins == [0.0, 0.25]
    path.write_text("seed: 1\npurity_margins: 0.1\n")
    with pytest.raises(UserError, match=r"c\.yaml:2: `purity_margins` must be a list of "
                                        r"numbers, got 0\.1"):
        load_config(str(path))
    result = run_ple("train", "--purity-margins", "0.1", "x", "--output-dir", tmp_path / "o")
    assert result.returncode == 2
    assert "argument --purity_margins/--purity-margins: invalid float value: 'x'" \
        in result.stderr
    assert not (tmp_path / "o").exists()
