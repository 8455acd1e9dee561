"""generation_backend: vllm. vLLM itself needs a CUDA GPU and is not installed here; these
tests check the refusals at config validation and ple's side of the hand-over to vLLM,
against a stand-in module with vLLM's API."""

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest

from conftest import run_ple


def fake_vllm(monkeypatch, calls: list):
    """A stand-in `vllm` package: LLM.generate records what it was given and answers each
    prompt with [5, stop, 7] (the 7 after the stop token must be cut)."""
    def module(name):
        m = types.ModuleType(name)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    class LLM:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def generate(self, prompts, params, lora_request, use_tqdm):
            adapter = Path(lora_request.path)
            calls.append(("generate", prompts, lora_request,
                          (adapter / "adapter_config.json").is_file()))
            stop = params.stop_token_ids[0]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
                token_ids=[5, stop, 7])]) for _ in prompts]

    class LoRARequest:
        def __init__(self, name, int_id, path):
            self.name, self.int_id, self.path = name, int_id, path

    vllm = module("vllm")
    vllm.LLM = LLM
    vllm.SamplingParams = lambda **kwargs: types.SimpleNamespace(**kwargs)
    module("vllm.inputs").TokensPrompt = dict
    module("vllm.lora")
    module("vllm.lora.request").LoRARequest = LoRARequest


def test_vllm_missing_is_one_line_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not importable, whatever is installed

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr("ple.models.load_policy", no_model)
    out = tmp_path / "run"
    result = run_ple("train", "--model", "default", "--generation-backend", "vllm",
                     "--output-dir", out)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "generation_backend" in result.stderr and "pip install vllm" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("flags, says", [
    (["--method", "rloo"], "not rloo"),
    (["--use-lora", "false"], "use_lora"),
    (["--model", "tiny"], "not tiny"),
    (["--generation-backend", "tensorrt"], "must be one of transformers, vllm"),
])
def test_vllm_refuses_what_it_cannot_serve(tmp_path, monkeypatch, flags, says):
    fake_vllm(monkeypatch, [])
    result = run_ple("train", "--generation-backend", "vllm", *flags,
                     "--output-dir", tmp_path / "run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert says in result.stderr


def test_sampler_hands_vllm_the_current_adapter_each_call(tiny, monkeypatch):
    from ple.config import load_config
    from peft import get_peft_model

    from ple.models import paper_lora, tiny_model
    from ple.rollout import stop_ids
    from ple.vllm_backend import VLLMSampler

    calls = []
    fake_vllm(monkeypatch, calls)
    _, tokenizer = tiny
    model = get_peft_model(tiny_model(len(tokenizer), seed=0), paper_lora())
    cfg = load_config(None, {"model": "some/hub-model", "generation_backend": "vllm",
                             "top_k": 0, "max_new_tokens": 5})
    sampler = VLLMSampler(cfg, model, tokenizer)
    stop = min(stop_ids(model, tokenizer))
    first = sampler.sample(model, [[1, 2, 3], [4]])
    sampler.sample(model, [[1]])

    (_, init), (_, prompts, request, adapter_saved), (_, _, request2, _) = calls
    assert init["model"] == "some/hub-model" and init["enable_lora"]
    assert init["max_lora_rank"] == cfg.lora_r
    assert prompts == [{"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [4]}]
    assert adapter_saved and not Path(request.path).exists()  # saved, then cleaned up
    assert request2.int_id != request.int_id  # a new id: vLLM must not serve a cached copy
    assert first == [[5, stop], [5, stop]]  # cut after the stop token, which is kept
    assert sampler.params.top_k == -1 and sampler.params.max_tokens == 5
