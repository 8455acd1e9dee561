"""The first run on a fresh machine (nothing in the cache) behaves as later runs do: a refusal
is one line and loads no weights; preparing the default model says so in one line, with no
third-party progress bars or warnings. Each test runs `ple` in its own process with an empty
PLE_CACHE_DIR and HOME, as a new user's machine has."""

import os
import re
import subprocess
import sys

import pytest

from test_bad_inputs import assert_refused

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training

# ple's own progress bars (tqdm redraws them with carriage returns on stderr).
# ple's progress bars, and transformers.Trainer's (which has no description).
OWN_BARS = re.compile(r"^((held-out evaluation|reference perplexity):|\d+%\|)")


def run_cold(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PLE_CACHE_DIR"}
    env.update(HOME=str(tmp_path / "home"), PLE_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "ple.cli", *map(str, args)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_refusal_on_a_cold_cache_is_one_line_and_loads_no_weights(tmp_path):
    principle = tmp_path / "p.txt"
    principle.write_text("Be kind. " * 800)
    out = tmp_path / "out"
    result = run_cold(tmp_path, "train", "--model", "tiny", "--principle-file", principle,
                      "--output-dir", out)
    assert_refused(result, "exceeds the model's context of 2048 tokens", out)
    prepared = tmp_path / "cache" / "SmolLM2-135M-Instruct"
    assert (prepared / "tokenizer.json").is_file()
    assert not (prepared / "model.safetensors").exists()


def test_unwritable_output_dir_is_one_line(tmp_path):
    result = run_cold(tmp_path, "train", "--model", "tiny", "--max-steps", "1",
                      "--output-dir", "/proc/forbidden")
    assert_refused(result, "--output-dir /proc/forbidden: cannot write in /proc")
    # Refused before any work: not even the tokenizer was prepared.
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_first_run_on_the_default_model_says_one_line_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    result = run_cold(tmp_path, "train", "--model", "default", "--max-steps", "1",
                      "--batch-size", "2", "--max-new-tokens", "8", "--eval-queries", "2",
                      "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    # (tqdm moves the cursor up, `\x1b[A`, to redraw a bar nested in Trainer's.)
    text = result.stderr.replace("\x1b[A", "")
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    ours = [line for line in lines if line.startswith("ple: ")]
    assert len(ours) == 1 and "preparing the default model once" in ours[0], ours
    assert [line for line in lines if not line.startswith("ple: ")
            and not OWN_BARS.match(line)] == []
    assert (tmp_path / "cache" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    # The second run finds the prepared model and says nothing about it.
    again = run_cold(tmp_path, "train", "--model", "default", "--max-steps", "1",
                     "--batch-size", "2", "--max-new-tokens", "8", "--eval-queries", "0",
                     "--output-dir", out, "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ple: " not in again.stderr
