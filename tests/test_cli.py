"""The `ple` command as a user runs it: the output contract and bad input."""

import gzip
import json
import math

import pytest

from conftest import run_ple

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "D"
    result = run_ple("train", "--model", "tiny", "--task", "imdb", "--max-steps", "3",
                     "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_contract_files(run_dir):
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "reward_curves.png",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "reward_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_metrics_fields(run_dir):
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("step", "tau", "n_queries", "buffer_size", "n_rank", "n_weighted",
                "reward_mean", "reward_prompt_mean", "loss", "loss_rank", "loss_wsft",
                "margin_rank", "margin_weighted",
                "seconds_generate", "seconds_score", "seconds_train"):
        assert all(key in r for r in rows), key
    assert [r["tau"] for r in rows] == pytest.approx([0.2, 0.18, 0.162])


def test_samples_obey_tau_branch_and_eq5(run_dir):
    rows = [json.loads(line) for line in open(run_dir / "samples.jsonl")]
    assert len(rows) == 3 * 8  # default batch_size 8
    for r in rows:
        assert r["tau"] == pytest.approx(0.2 * 0.9 ** (r["step"] - 1), abs=1e-12)
        rank = r["reward_prompt"] - r["reward"] > r["tau"]
        assert r["branch"] == ("rank" if rank else "weighted")
        if rank:
            assert r["w"] is None and r["w_prompt"] is None
        else:
            e, e_p = math.exp(r["reward"]), math.exp(r["reward_prompt"])
            assert r["w"] == pytest.approx(2 * e / (e + e_p) - 1)
            assert r["w_prompt"] == pytest.approx(2 * e_p / (e + e_p) - 1)
        for key in ("query", "response", "response_prompt"):
            assert isinstance(r[key], str)


def test_resolved_config_written(run_dir):
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["max_steps"] == 3 and cfg["model"] == "tiny" and cfg["tau0"] == 0.2


def test_rerun_into_same_dir_refuses_without_overwrite(run_dir):
    result = run_ple("train", "--model", "tiny", "--max-steps", "1", "--output-dir", str(run_dir))
    assert result.returncode == 2
    assert "holds another run" in result.stderr and "--overwrite" in result.stderr


def write(path, text):
    path.write_text(text)
    return str(path)


BAD = {
    "alpha out of range": (["--alpha", "1.5"], "config key `alpha` = 1.5: must be in (0, 1)"),
    "tau0 negative": (["--tau0", "-1"], "config key `tau0` = -1.0: must be >= 0"),
    "batch size zero": (["--batch-size", "0"], "config key `batch_size` = 0: must be >= 1"),
    "missing data file": (["--data", "nope.jsonl"], "data file nope.jsonl does not exist"),
    "eval steps without eval queries": (["--eval-steps", "5"], "config key `eval_steps` = 5: "
                                        "needs eval_queries (the held-out queries to evaluate "
                                        "on)"),
    "no reward for tldr": (["--task", "tldr"], "config key `reward`: task tldr has no offline "
                           "default reward; give a reward model path, a hub id or module:function"),
    "missing model path": (["--model", "./no/such/model"], "model path ./no/such/model does "
                                                           "not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_flags_exit_2_with_one_line_and_write_nothing(case, tmp_path):
    flags, message = BAD[case]
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", *flags, "--output-dir", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"ple: error: {message}"]
    assert not out.exists()


def test_bad_data_files_name_file_and_line(tmp_path):
    out = tmp_path / "out"
    cases = [
        (write(tmp_path / "a.jsonl", '{"prompt": "fine"}\n{"prompt": \n'),
         "a.jsonl:2: malformed JSON"),
        (write(tmp_path / "b.jsonl", '{"prompt": "fine"}\n{"title": "x"}\n'),
         "b.jsonl:2: record has no `prompt` or `text` field, which task imdb needs"),
        (write(tmp_path / "c.jsonl", '{"prompt": 3}\n'), "c.jsonl:1: field `prompt` must be a "
                                                         "non-empty string"),
        (write(tmp_path / "d.jsonl", "\n"), "data " + str(tmp_path / "d.jsonl") + ": no records"),
    ]
    for path, message in cases:
        result = run_ple("train", "--model", "tiny", "--data", path, "--output-dir", str(out))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_unknown_yaml_key_and_all_queries_too_long(tmp_path):
    out = tmp_path / "out"
    config = write(tmp_path / "c.yaml", "task: imdb\nsteps: 3\n")
    result = run_ple("train", "--config", config, "--output-dir", str(out))
    assert result.returncode == 2 and "c.yaml:2: unknown config key `steps`" in result.stderr
    result = run_ple("train", "--model", "tiny", "--max-prompt-tokens", "3",
                     "--output-dir", str(out))
    assert result.returncode == 2
    assert "all 282 queries are longer than max_prompt_tokens = 3" in result.stderr
    assert not out.exists()


def test_hh_transcripts_from_gzip(tmp_path):
    data = tmp_path / "hh.jsonl.gz"
    with gzip.open(data, "wt") as f:
        for i in range(3):
            f.write(json.dumps({"chosen": f"\n\nHuman: Tell me fact {i}.\n\nAssistant: Sure.",
                                "rejected": "\n\nHuman: x\n\nAssistant: no"}) + "\n")
    write(tmp_path / "length_reward.py",
          "def score(prompts, completions):\n"
          "    return [len(c) / 10 for c in completions]\n")
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", "--task", "hh", "--data", str(data),
                     "--reward", "length_reward:score", "--max-steps", "1", "--batch-size",
                     "3", "--max-new-tokens", "4", "--output-dir", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-1500:]
    rows = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert sorted(r["query"] for r in rows) == [
        f"\n\nHuman: Tell me fact {i}.\n\nAssistant:" for i in range(3)]
    assert all(r["reward"] == pytest.approx(len(r["response"]) / 10) for r in rows)


def test_generate_shows_base_and_adapter_side_by_side(run_dir):
    result = run_ple("generate", "--model", "tiny", "--adapter", str(run_dir / "adapter"),
                     "--task", "imdb", "-n", "2", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.count("### query") == 2
    assert result.stdout.count("--- base") == 2 and result.stdout.count("--- adapter") == 2


def test_generate_rejects_a_directory_that_is_not_an_adapter(tmp_path):
    result = run_ple("generate", "--model", "tiny", "--adapter", str(tmp_path))
    assert result.returncode == 2
    assert "not a PEFT adapter directory" in result.stderr


@pytest.mark.slow  # two evaluations of 128 openings
def test_demo_reports_the_paired_rise_on_every_held_out_opening(tmp_path, monkeypatch,
                                                               capsys):
    """`ple demo` (on the tiny model here): trains, then measures plain responses to all
    128 built-in held-out openings before and after, and prints the paired rise."""
    from ple import cli
    from ple.tasks import builtin_queries

    monkeypatch.setitem(cli.DEMO, "model", "tiny")
    monkeypatch.setitem(cli.DEMO, "max_new_tokens", 4)  # what is tested is which openings
    assert cli.main(["demo", "--output-dir", str(tmp_path / "demo"), "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    held_out = builtin_queries("imdb", "heldout")
    assert len(held_out) == 128
    assert out.count("(n=128)") == 2
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    before, after = summary["eval_before"]["samples"], summary["eval_after"]["samples"]
    assert [s["query"] for s in before] == [s["query"] for s in after] == held_out
    rise = [b["reward"] - a["reward"] for a, b in zip(before, after)]
    assert f"rise {sum(rise) / len(rise):+.3f} ± " in out
    assert out.count("  opening: ") == 3
