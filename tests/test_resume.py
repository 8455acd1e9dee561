"""Crash safety: a run killed mid-step, or while writing a checkpoint, resumes to exactly the
result of an uninterrupted run with the same seed (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_ple

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training

SLOW_REWARD = """
import time

def score(prompts, completions):
    time.sleep(0.3)  # keeps the process inside a step long enough to be killed there
    return [len(c) / 20 for c in completions]
"""
# tau_scale spread: tau depends on the spread of s' - s measured in step 1, state that a
# resumed run must take back from the checkpoint, not measure again.
FLAGS = ["--model", "tiny", "--task", "imdb", "--max-steps", "6", "--save-steps", "2",
         "--batch-size", "4", "--max-new-tokens", "8", "--reward", "slow_reward:score",
         "--tau-scale", "spread"]

CRASH_IN_CHECKPOINT = """
import os, signal, sys
from ple.trainer import PLETrainer

real = PLETrainer._write_method_files

def write_then_die(self, folder):
    if folder.name == "checkpoint-4":
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, folder)

PLETrainer._write_method_files = write_then_die
from ple.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    (d / "slow_reward.py").write_text(SLOW_REWARD)
    (d / "crash_in_checkpoint.py").write_text(CRASH_IN_CHECKPOINT)
    return d


def env_for(workdir):
    return {**os.environ, "PYTHONPATH": str(workdir), "HF_HUB_OFFLINE": "1"}


def ple_subprocess(*args, workdir):
    """A real `ple` process, for tests that kill it."""
    return subprocess.Popen([sys.executable, "-m", "ple.cli", *args], cwd=workdir,
                            env=env_for(workdir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    out = workdir / "whole"
    result = run_ple("train", *FLAGS, "--output-dir", str(out), cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def assert_same_run(a, b):
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()
    strip = lambda row: {k: v for k, v in row.items() if not k.startswith("seconds_")}  # noqa
    rows_a = [strip(json.loads(line)) for line in open(a / "metrics.jsonl")]
    rows_b = [strip(json.loads(line)) for line in open(b / "metrics.jsonl")]
    assert rows_a == rows_b and len(rows_a) == 6
    wa = load_file(str(a / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(b / "adapter" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_same_samples_and_weights(workdir, uninterrupted):
    again = workdir / "again"
    result = run_ple("train", *FLAGS, "--output-dir", str(again), cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(uninterrupted, again)


def test_sigkill_mid_step_then_resume(workdir, uninterrupted):
    out = workdir / "killed"
    proc = ple_subprocess("train", *FLAGS, "--output-dir", str(out), workdir=workdir)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    time.sleep(0.1)  # step 4 is now generating or scoring
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = len(metrics.read_text().splitlines())
    assert lines == 3, f"the kill did not land inside step 4 ({lines} steps logged)"
    result = run_ple("train", "--resume", "--output-dir", str(out), cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ple: resuming after step 2" in result.stderr
    assert_same_run(uninterrupted, out)


def test_kill_while_writing_checkpoint_uses_previous_one(workdir, uninterrupted):
    out = workdir / "crashed_in_checkpoint"
    proc = subprocess.run([sys.executable, str(workdir / "crash_in_checkpoint.py"), "train",
                           *FLAGS, "--output-dir", str(out)], cwd=workdir,
                          env=env_for(workdir), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (out / ".staging" / "checkpoint-4").is_dir()  # the one the crash cut short
    result = run_ple("train", "--resume", "--output-dir", str(out), cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ple: resuming after step 2" in result.stderr
    assert_same_run(uninterrupted, out)


def test_resume_refuses_a_changed_config_naming_the_keys(workdir, uninterrupted):
    result = run_ple("train", "--resume", "--output-dir", str(uninterrupted), "--alpha", "0.5",
                     "--seed", "3", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip() == ("ple: error: --resume: the config differs from the saved "
                                     "run in seed, alpha")


def test_resume_without_checkpoint_or_run(workdir):
    result = run_ple("train", "--resume", "--output-dir", str(workdir / "nothing"))
    assert result.returncode == 2 and "no run to continue" in result.stderr
