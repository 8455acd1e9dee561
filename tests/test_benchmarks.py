"""The benchmark scripts on the tiny model: they run end to end, compare like with like, and
report what they say they report."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training

BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *map(str, args)],
                          capture_output=True, text=True, timeout=1200)


def test_phase_meter_times_and_peaks_each_phase_apart():
    from benchlib import PhaseMeter

    meter = PhaseMeter()
    meter.enter("small")
    meter.enter("big")
    block = b"\x01" * (200 * 2**20)  # written, so resident
    del block
    meter.enter("small")  # a phase entered twice adds up
    record = meter.finish(tokens=3)
    assert set(record["seconds"]) == {"small", "big"}
    assert record["step_seconds"] == pytest.approx(sum(record["seconds"].values()))
    assert record["peak_mib"]["big"] > record["peak_mib"]["small"] + 150
    assert record["step_peak_mib"] == record["peak_mib"]["big"]
    assert record["tokens"] == 3
    assert meter.current is None and meter.seconds == {}


def test_append_markdown_writes_the_header_once(tmp_path):
    from benchlib import MARKDOWN_HEADER, append_markdown

    path = tmp_path / "BENCHMARKS.md"
    append_markdown(str(path), "first", ["| a |"])
    append_markdown(str(path), "second", ["| b |"])
    text = path.read_text()
    assert text.startswith(MARKDOWN_HEADER) and text.count(MARKDOWN_HEADER) == 1
    assert text.index("## first") < text.index("## second")
    for key in ("- Command: `python ", "- Machine: ", "- Date: 20"):
        assert text.count(key) == 2


def test_step_bench_compares_equal_lengths_and_reports_ratios(tmp_path):
    # With activation checkpointing: the path without it is the same code minus one call,
    # and each run of the bench starts four processes (half a minute).
    out, md = tmp_path / "step.json", tmp_path / "BENCHMARKS.md"
    result = run_script("step_bench.py", "--model", "tiny", "--batch-size", 2,
                        "--max-new-tokens", 4, "--steps", 2, "--out", out,
                        "--append-markdown", md, "--gradient-checkpointing")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    for name in ("ple", "floor", "peer"):
        steps = data["steps"][name]["steps"]
        assert len(steps) == 2  # the warm-up step is kept apart
        # 2 queries -> 4 sequences of exactly 4 new tokens, for every contender.
        assert [s["tokens"] for s in steps] == [16, 16], name
        assert steps[0]["seconds"]["generate"] > 0 and steps[0]["step_peak_mib"] > 0
    assert set(data["steps"]["ple"]["steps"][0]["seconds"]) == {"generate", "score", "train"}
    assert set(data["steps"]["peer"]["steps"][0]["seconds"]) == {"generate", "score", "train"}
    assert set(data["steps"]["floor"]["steps"][0]["seconds"]) == {"generate", "train"}
    s = data["summary"]
    assert data["ratios"]["ple_over_floor_time"] == pytest.approx(
        s["ple"]["step_seconds"] / s["floor"]["step_seconds"])
    assert data["ratios"]["ple_over_peer_memory"] == pytest.approx(
        s["ple"]["peak_mib"] / s["peer"]["peak_mib"])
    text = md.read_text()
    assert "lengths equal across contenders: yes" in text
    assert "activation checkpointing on for all three" in text
    assert "--model tiny" in text and "| ple_over_peer_time |" in text
    assert "| peer |" in text


def test_threads_bench_runs_one_process_then_jobs_at_once(tmp_path):
    out = tmp_path / "threads.json"
    result = run_script("threads_bench.py", "--model", "tiny", "--cycles", 1, "--batch-size",
                        1, "--max-new-tokens", 2, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    one, jobs = data["one"], data["jobs"]
    assert (one["processes"], jobs["processes"]) == (1, 2)
    assert jobs["threads_each"] == max(1, one["threads_each"] // 2)
    assert [len(s) for s in jobs["cycle_seconds"]] == [1, 1]
    assert data["ratio"] == pytest.approx(jobs["cycles_per_minute"] / one["cycles_per_minute"])
    assert f"over one run: **{data['ratio']:.2f}x**" in result.stdout


def test_replay_bench_full_replay_grows_and_window_stays(tmp_path):
    out = tmp_path / "replay.json"
    result = run_script("replay_bench.py", "--model", "tiny", "--steps", 3,
                        "--eval-queries", 2, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    window, full = runs["window 1"]["steps"], runs["full replay"]["steps"]
    assert [s["pairs"] for s in window] == [8, 8, 8]
    assert [s["pairs"] for s in full] == [8, 16, 24]
    assert [s["buffer_size"] for s in full] == [8, 16, 24]
    for r in runs.values():
        assert r["eval_after"]["reward_mean"] is not None
    assert "| full replay | 48 |" in result.stdout


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "hh-rlhf").is_dir(),
                    reason="needs ../shared/data (the HH-RLHF slice)")
def test_hh_study_queries_come_from_what_the_reward_held_out(tmp_path):
    """hh_study_data.py: one record per distinct first Human turn, each from a pair the
    built-in hh-preference reward held out (never trained on)."""
    from ple.hh_format import hh_turns
    from ple.rewards.builtin import recipe_config
    from ple.rewards.training.data import split_examples

    result = run_script("hh_study_data.py", "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    train, held_out, _ = split_examples(recipe_config("hh-preference", str(tmp_path / "x")))
    trained_on = {e.where for e in train}
    held = {e.where for e in held_out}
    for name, subset in (("harmless_first_turn.jsonl", "harmless-base"),
                         ("helpful_first_turn.jsonl", "helpful-base")):
        records = [json.loads(line) for line in open(tmp_path / name)]
        assert len(records) >= 200
        assert all(r["source"] in held and r["source"] not in trained_on and
                   f"/{subset}/" in r["source"] for r in records)
        requests = [r["chosen"].split("\n\nAssistant:")[0] for r in records]
        assert len(set(requests)) == len(requests)
        assert all([t["role"] for t in hh_turns(r["chosen"])] in (["user"], ["user", "assistant"])
                   for r in records)


# Two requests before and after, as hh_before_after.py reads them from eval_samples.jsonl.
HH_BEFORE = [{"query": "q1", "response": "Sure, here | is how.", "reward": 0.0},
             {"query": "q2", "response": "I can't help with that.", "reward": -1.0}]
HH_AFTER = [{"query": "q2", "response": "I'm sorry, I won't.", "reward": 1.0},
            {"query": "q1", "response": "Here it is.", "reward": 0.5}]


def hh_summary() -> dict:
    from hh_before_after import summary

    evals = tuple({"reward_mean": m, "reward_se": 0.1, "base_perplexity": 9.0,
                   "distinct_2": 0.8} for m in (-0.5, 0.75))
    return summary(HH_BEFORE, HH_AFTER, evals, ([0.2, 0.9], [0.7, 0.4]))


def test_hh_before_after_summary_pairs_queries_and_counts_declines():
    row = hh_summary()
    assert row["n"] == 2
    assert row["rise"] == pytest.approx(1.25)  # paired by query: (0.5 - 0) and (1 - -1)
    assert row["before"]["declines_phrases"][0] == 0.5
    assert row["after"]["declines_phrases"][0] == 0.5
    assert row["before"]["declines_judge"][0] == 0.5  # 0.9 > 0.5
    assert row["after"]["declines_judge_probability"][0] == pytest.approx(0.55)
    assert row["before"]["words"][0] == pytest.approx(5.0)


def test_hh_before_after_tables_pair_each_request_with_its_own_responses():
    from hh_before_after import tables

    row = hh_summary()
    row["winrate_after_vs_before"] = {"win": 1, "tie": 1, "lose": 0}
    text = tables({"sets": {"harmful": row}}, {("harmful", "before"): HH_BEFORE,
                                               ("harmful", "after"): HH_AFTER}, {"harmful": 2})
    lines = text.splitlines()
    assert lines[2].startswith("| harmful | 2 | -0.500 ± 0.100 | +0.750 ± 0.100 | "
                               "**+1.250 ± 0.750** | 50.0% ± 50.0% → 50.0% ± 50.0% |")
    assert lines[2].endswith("| 1 / 1 / 0 |")
    assert "| q1 | Sure, here \\| is how. (+0.00) | Here it is. (+0.50) |" in lines
    assert "| q2 | I can't help with that. (-1.00) | I'm sorry, I won't. (+1.00) |" in lines


def test_hh_principle_probe_pairs_guided_with_plain_and_places_the_principle():
    from hh_principle_probe import prompt_messages, summary

    plain = {"responses": ["Sure, here is how.", "I'm sorry, no.", "Fine."],
             "rewards": [0.0, 0.5, 1.0]}
    guided = {"responses": ["I can't help with that.", "I won't.", "Okay."],
              "rewards": [1.0, 0.4, 0.9]}
    row = summary(plain, guided, tau=0.2)
    assert row["declines"][0] == pytest.approx(2 / 3)
    assert row["gap"][0] == pytest.approx((1.0 - 0.1 - 0.1) / 3)  # paired by request
    assert row["over_tau"] == pytest.approx(1 / 3)
    # Only the first request is declined by the guided response alone.
    assert row["only_guided_declines"] == 1 and row["only_guided_gap"] == pytest.approx(1.0)
    assert "gap" not in summary(plain, plain, tau=0.2)
    query = "\n\nHuman: hi\n\nAssistant:"
    assert prompt_messages(query, "Be kind.", "system") == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]
    assert prompt_messages(query, "Be kind.", "user") == [
        {"role": "user", "content": "Be kind.\n\nhi"}]
    assert prompt_messages(query, None, "user") == [{"role": "user", "content": "hi"}]


def test_diagnostics_terms_by_hand():
    """Eq. 6's terms as the probe splits them: one rank pair, one weighted pair."""
    from ple_diagnostics import gradient_parts, term_losses

    logp_sum = torch.tensor([-4.0, -6.0, -2.0, -9.0], requires_grad=True)  # y1 y2 y'1 y'2
    t = {"is_rank": torch.tensor([True, False]), "logp_sum": logp_sum, "logp_wsft": logp_sum,
         "weights": torch.tensor([[0.0, 0.0], [0.5, -0.5]]),  # pair 2: y up, y' down
         "rank": torch.tensor([-0.3, 9.9]), "anchor": torch.tensor([1.0, 3.0])}
    terms = term_losses(t, anchor_coef=0.5)
    assert float(terms["rank"].detach()) == pytest.approx(-0.3 / 2)  # the rank pair's only
    assert float(terms["wsft_positive"].detach()) == pytest.approx(-(0.5 * -6.0) / 2)
    assert float(terms["wsft_negative"].detach()) == pytest.approx(-(-0.5 * -9.0) / 2)
    assert float(terms["anchor"].detach()) == pytest.approx(0.5 * 2.0)
    assert float(terms["rank_unnormalised"].detach()) == pytest.approx(-(-2.0 + 4.0) / 2)
    # wsft_coef scales both halves of Eq. 4; wsft_positive_only trains no negative half.
    scaled = term_losses(t, anchor_coef=0.5, wsft_coef=0.3, positive_only=True)
    assert float(scaled["wsft_positive"].detach()) == pytest.approx(0.3 * -(0.5 * -6.0) / 2)
    assert float(scaled["wsft_negative"]) == 0.0 and not scaled["wsft_negative"].requires_grad
    w = torch.tensor([1.0, 2.0, -1.0], requires_grad=True)
    t = {"is_rank": torch.tensor([True, False]), "logp_sum": w.sum() * torch.ones(4),
         "logp_wsft": w.sum() * torch.ones(4),
         "weights": torch.tensor([[0.0, 0.0], [0.5, -0.5]]), "rank": (w * w).sum().expand(2),
         "anchor": w[0].expand(2)}
    parts = gradient_parts(t, 1.0, [w])
    trained = ("rank", "wsft_positive", "wsft_negative", "anchor")
    assert sum(parts[f"share_{k}"] for k in trained) == pytest.approx(1.0)
    assert parts["grad_norm_rank"] == pytest.approx(float((2 * w / 2).norm()))


def test_diagnostics_probe_leaves_training_as_it_was(tmp_path, monkeypatch):
    """The probed run trains exactly as `ple train` does with the same flags; its margins
    before the update are the ones the trainer logs."""
    from ple.cli import main as ple_main
    from ple_diagnostics import main

    (tmp_path / "diag_chars.py").write_text(
        "def score(prompts, completions):\n    return [len(c) / 40 for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    flags = ["--model", "tiny", "--max-steps", "3", "--batch-size", "4", "--max-new-tokens",
             "10", "--reward", "diag_chars:score", "--tau0", "0.1", "--lora-dropout", "0",
             "--learning-rate", "1e-2"]
    out = tmp_path / "diag.json"
    assert main([*flags, "--output-dir", str(tmp_path / "probed"), "--out", str(out)]) == 0
    assert ple_main(["train", *flags, "--output-dir", str(tmp_path / "plain")]) == 0
    rows = json.loads(out.read_text())["rows"]
    read = lambda d: [json.loads(x) for x in open(tmp_path / d / "metrics.jsonl")]  # noqa: E731
    probed, plain = read("probed"), read("plain")
    keys = ("loss", "loss_rank", "loss_wsft", "reward_mean", "margin_rank", "grad_norm")
    assert [[r[k] for k in keys] for r in probed] == [[r[k] for k in keys] for r in plain]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert sum(r["n_rank"] for r in rows) > 0 and sum(r["n_weighted"] for r in rows) > 0
    for row, logged in zip(rows, probed):
        assert (row["n_rank"], row["n_weighted"]) == (logged["n_rank"], logged["n_weighted"])
        for b in ("rank", "weighted"):
            if logged[f"margin_{b}"] is None:
                assert row[f"margin_{b}_before"] is None
            else:
                assert row[f"margin_{b}_before"] == pytest.approx(logged[f"margin_{b}"],
                                                                  abs=1e-4)
        shares = [row[f"share_{k}"] for k in ("rank", "wsft_positive", "wsft_negative",
                                              "anchor")]
        assert sum(shares) == pytest.approx(1.0, abs=1e-4)


def test_response_forms_by_hand(tmp_path):
    from response_forms import forms

    responses = ["As the night falls, the film ends.", "As the sun rises, she smiles.",
                 "The next scene is short.", "I'm so glad to assist you today!",
                 "A wonderful cast and a moving plot."]
    assert forms(responses) == {"top-3 openers": 4 / 5,  # "As the" twice, two others once
                                "assistant-speak": 1 / 5, "mentions the film": 3 / 5}
    def write(folder, texts, rewards):
        folder.mkdir(parents=True)
        (folder / "eval_samples.jsonl").write_text("".join(
            json.dumps({"query": str(i), "response": t, "reward": r}) + "\n"
            for i, (t, r) in enumerate(zip(texts, rewards))))

    write(tmp_path / "runs/ple/seed0", responses, [1.0, 2.0, 0.0, 3.0, 1.0])
    result = run_script("response_forms.py", tmp_path, "ple:0")
    assert result.returncode == 0, result.stderr
    assert "| ple | 0 | 5 | 80.0 % | 20.0 % | 60.0 % | 'As the' 2," in result.stdout
    assert result.stdout.rstrip().endswith("| – | – |")  # no BASE to pair with

    # Against BASE: run − BASE is +1, +1, -1, +3, +1 (mean 1, SE sqrt(2/5)); without the
    # assistant-speak response (the fourth) +1, +1, -1, +1 (mean 0.5, SE 1/2).
    write(tmp_path / "base/seed0", ["x"] * 5, [0.0, 1.0, 1.0, 0.0, 0.0])
    result = run_script("response_forms.py", tmp_path, "ple:0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("| +1.000 ± 0.632 | +0.500 ± 0.500 (4) |")
