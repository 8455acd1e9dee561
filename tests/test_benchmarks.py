"""The benchmark scripts on the tiny model: they run end to end, compare like with like, and
report what they say they report."""

import json
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("checkpointing", [[], ["--gradient-checkpointing"]])
def test_step_bench_compares_equal_lengths_and_reports_ratios(tmp_path, checkpointing):
    out, md = tmp_path / "step.json", tmp_path / "BENCHMARKS.md"
    result = run_script("step_bench.py", "--model", "tiny", "--batch-size", 2,
                        "--max-new-tokens", 4, "--steps", 2, "--out", out,
                        "--append-markdown", md, *checkpointing)
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
    assert f"activation checkpointing {'on' if checkpointing else 'off'} for all three" in text
    assert "--model tiny" in text and "| ple_over_peer_time |" in text
    assert "| peer |" in text


def test_replay_bench_full_replay_grows_and_window_stays(tmp_path):
    out = tmp_path / "replay.json"
    result = run_script("replay_bench.py", "--model", "tiny", "--steps", 3,
                        "--eval-queries", 2, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    window, full = runs["window 1"]["steps"], runs["full replay"]["steps"]
    assert [s["n_updates"] for s in window] == [1, 1, 1]
    assert [s["n_updates"] for s in full] == [1, 2, 3]
    assert [s["buffer_size"] for s in full] == [8, 16, 24]
    for r in runs.values():
        assert r["eval_after"]["reward_mean"] is not None
    assert "| full replay | 6 |" in result.stdout
