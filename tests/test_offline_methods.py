"""SFT and DPO through TRL, in the same output contract, on the tiny model."""

import gzip
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_ple
from ple.models import load_policy
from ple.tasks import builtin_queries

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training


def unchanged_lora(adapter_dir) -> list[str]:
    """Adapter tensors equal to their initial values (the run seeds LoRA's init with 0)."""
    from peft import get_peft_model

    from ple.models import paper_lora

    torch.manual_seed(0)
    initial = {n.replace(".default", ""): p.detach() for n, p in
               get_peft_model(load_policy("tiny", seed=0)[0], paper_lora()).named_parameters()
               if p.requires_grad}
    trained = load_file(str(adapter_dir / "adapter_model.safetensors"))
    assert trained.keys() == initial.keys()
    return [n for n in trained if torch.equal(trained[n], initial[n])]


def check_contract(out, steps):
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "loss_curve.png",
                 "summary.json", "adapter/adapter_model.safetensors"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert all(isinstance(r["loss"], float) for r in rows)
    assert rows[-1]["optimizer_steps"] == steps
    return rows


def test_sft_on_imdb_positive_reviews(tmp_path):
    data = tmp_path / "imdb.jsonl"
    data.write_text("".join(json.dumps({"text": f"Review {i}: a warm, funny and moving film "
                                                f"that I loved from start to end", "label": i % 2})
                            + "\n" for i in range(8)))
    out = tmp_path / "sft"
    result = run_ple("train", "--method", "sft", "--model", "tiny", "--data", data,
                     "--max-steps", "2", "--batch-size", "2", "--learning-rate", "1e-2",
                     "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = check_contract(out, 2)
    assert rows[-1]["generated_responses"] == 0
    assert json.loads((out / "summary.json").read_text())["examples"] == 4  # label 1 only
    assert unchanged_lora(out / "adapter") == []


def test_dpo_on_hh_human_pairs(tmp_path):
    data = tmp_path / "hh.jsonl.gz"
    with gzip.open(data, "wt") as f:
        for i in range(4):
            f.write(json.dumps({"chosen": f"\n\nHuman: Question {i}?\n\nAssistant: A kind answer.",
                                "rejected": f"\n\nHuman: Question {i}?\n\nAssistant: Go away."})
                    + "\n")
    out = tmp_path / "dpo"
    result = run_ple("train", "--method", "dpo", "--task", "hh", "--model", "tiny", "--data",
                     data, "--max-steps", "2", "--batch-size", "2", "--learning-rate", "1e-2",
                     "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    check_contract(out, 2)
    assert unchanged_lora(out / "adapter") == []


def test_dpo_on_imdb_makes_pairs_from_ranked_samples(tmp_path):
    out = tmp_path / "dpo"
    result = run_ple("train", "--method", "dpo", "--model", "tiny", "--max-steps", "2",
                     "--batch-size", "2", "--max-new-tokens", "12", "--learning-rate", "1e-2",
                     "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = check_contract(out, 2)
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert samples and all(s["reward_chosen"] > s["reward_rejected"] for s in samples)
    # Two samples for each query the 2 steps x 2 queries train on, not for all 282 built-in.
    assert len(builtin_queries("imdb", "train")) > 4
    assert rows[-1]["generated_responses"] == 2 * 2 * 2 and len(samples) <= 4


def test_dpo_pairs_only_the_queries_its_steps_train_on():
    """max_steps x batch_size x gradient_accumulation_steps queries, a draw by the seed; all
    of them, in order, when there are no more."""
    from types import SimpleNamespace

    from ple.baselines.dpo import queries_to_pair

    queries = [f"query {i}" for i in range(50)]
    args = lambda seed, steps: SimpleNamespace(max_steps=steps, batch_size=4,  # noqa: E731
                                               gradient_accumulation_steps=2, seed=seed)
    drawn = queries_to_pair(args(0, 3), queries)
    assert len(drawn) == len(set(drawn)) == 24 and set(drawn) <= set(queries)
    assert queries_to_pair(args(0, 3), queries) == drawn
    assert queries_to_pair(args(1, 3), queries) != drawn
    assert queries_to_pair(args(0, 7), queries) == queries


def test_dpo_samples_its_pairs_a_batch_of_queries_at_a_time(monkeypatch):
    """generated_pairs calls generate on batch_size queries (two samples each) at a time, not
    on all of them at once (504 queries ran out of memory), and keeps every pair in order."""
    from types import SimpleNamespace

    from ple.baselines import dpo

    calls = []

    def fake_sample(model, tokenizer, prompts, *rest):
        calls.append(len(prompts))
        return [[len(calls), i] for i in range(len(prompts))]

    monkeypatch.setattr(dpo, "sample", fake_sample)
    monkeypatch.setattr(dpo, "decode", lambda tok, rows: [f"{a}-{b}" for a, b in rows])
    monkeypatch.setattr(dpo, "checked_scores",
                        lambda reward, queries, texts: [float(t.split("-")[1]) for t in texts])
    run = SimpleNamespace(args=SimpleNamespace(batch_size=3, max_new_tokens=4, temperature=1.0,
                                               top_p=1.0, top_k=0),
                          prompter=SimpleNamespace(ids=lambda q: [len(q)]), model=None,
                          sampling=SimpleNamespace(of=lambda model: model),
                          tokenizer=None, reward=None,
                          totals={"generated_responses": 0, "generated_tokens": 0})
    queries = [f"query {i}" for i in range(7)]
    pairs, rows = dpo.generated_pairs(run, queries)
    assert calls == [6, 6, 2]
    assert run.totals["generated_responses"] == 14
    assert [p[0] for p in pairs] == queries  # the second sample of each scores higher
    assert pairs[0][1:] == ("1-1", "1-0") and pairs[6][1:] == ("3-1", "3-0")


@pytest.mark.parametrize("method,task,message", [
    ("sft", "imdb", "config key `data`: method sft needs supervised data"),
    ("dpo", "tldr", "config key `data`: method dpo needs preference pairs for task tldr"),
])
def test_methods_without_their_data_refuse(method, task, message, tmp_path):
    result = run_ple("train", "--method", method, "--task", task, "--model", "tiny",
                     "--reward", "vader", "--output-dir", tmp_path / "o")
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "o").exists()


def test_dpo_data_without_pairs_names_the_field(tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"prompt": "SUBREDDIT: r/x\n\nTL;DR:", "chosen": " a"}) + "\n")
    result = run_ple("train", "--method", "dpo", "--task", "tldr", "--model", "tiny",
                     "--data", data, "--output-dir", tmp_path / "o")
    assert result.returncode == 2
    assert f"{data}:1: field `rejected` must be a non-empty string" in result.stderr


def test_rloo_through_trl(tmp_path):
    # VADER scores the tiny model's token soup 0 for both samples: no advantage, no update.
    (tmp_path / "chars.py").write_text("def score(prompts, completions):\n"
                                       "    return [len(c) / 10 for c in completions]\n")
    out = tmp_path / "rloo"
    result = run_ple("train", "--method", "rloo", "--model", "tiny", "--max-steps", "2",
                     "--batch-size", "2", "--max-new-tokens", "8", "--learning-rate", "1e-2",
                     "--reward", "chars:score", "--output-dir", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = check_contract(out, 2)
    # Two responses per query, two queries per step.
    assert rows[-1]["generated_responses"] == 8
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert [s["step"] for s in samples] == [1] * 4 + [2] * 4
    assert unchanged_lora(out / "adapter") == []


def test_beta_is_the_kl_weight_trl_gets_for_dpo_and_rloo():
    from types import SimpleNamespace

    from ple.baselines.dpo import train_dpo
    from ple.baselines.rloo import rloo_args
    from ple.config import load_config

    assert rloo_args(load_config(None, {"method": "rloo", "beta": 0.3}))["beta"] == 0.3
    assert "beta" not in rloo_args(load_config(None, {"method": "rloo"}))  # TRL's default
    for beta, expected in ((0.5, {"beta": 0.5}), (None, {})):
        run = SimpleNamespace(args=load_config(None, {"method": "dpo", "beta": beta}),
                              prompt=lambda q: q, run=lambda *args, **kwargs: kwargs)
        passed = train_dpo(run, [("q", "good", "bad")])
        assert {k: v for k, v in passed.items() if k == "beta"} == expected
