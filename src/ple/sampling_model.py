"""The model that samples: the policy itself, or a copy of it in bf16 with its LoRA merged.

Generation is most of every step's time, and on a CPU with bf16 units (AVX512-BF16, AMX) or a
GPU, bf16 weights halve the bytes a decode step reads and use the faster matrix units; a merged
copy also drops LoRA's two extra matmuls per linear layer (BENCHMARKS.md, generation
benchmark). The losses keep the float32 policy's log-probs: only the sampling distribution is
the bf16 model's, which config.yaml records as `generation_dtype`.
"""

from __future__ import annotations

import copy

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from ple.errors import UserError


def bf16_is_native(device: torch.device) -> bool:
    """Whether `device` computes bf16 matmuls in hardware (a CUDA GPU with bf16, a CPU with
    AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() \
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def sampling_model(setting: str, device: torch.device, sharded: bool = False):
    """The SamplingModel a run's `generation_dtype` setting asks for on `device`: `auto` is
    bfloat16 where the device computes it natively, else float32; with `sharded` weights
    (DeepSpeed ZeRO) float32, since a whole second copy is what sharding exists to avoid."""
    if sharded and setting == "bfloat16":
        raise UserError("config key `generation_dtype` = bfloat16: not under DeepSpeed, "
                        "whose weights are sharded; use float32 or auto")
    if setting == "auto":
        setting = "bfloat16" if bf16_is_native(device) and not sharded else "float32"
    return SamplingModel(setting)


@torch.no_grad()
def merged_weights(policy) -> dict[str, torch.Tensor]:
    """The policy's weights as one plain model's, by the plain model's parameter names: a
    PEFT LoRA policy's deltas (B A x scaling) are added to the frozen weights they adapt.

    Computed out of place: merging into the policy and unmerging after would leave float
    rounding in its frozen weights every step."""
    if not isinstance(policy, PeftModel):
        return dict(policy.named_parameters())
    base = policy.get_base_model()
    weights = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            layer = module.get_base_layer()
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters
                        if a in module.lora_A)
            weights[f"{name}.weight"] = layer.weight + delta
    for name, param in base.named_parameters():
        if "lora_" not in name and ".base_layer." not in name:
            weights.setdefault(name, param)
    return weights


class SamplingModel:
    """What `rollout.sample` is given: `of(policy)` returns the policy itself (float32), or
    a plain copy in bf16 with the policy's current weights, refreshed on every call (the
    policy changes between calls: an optimizer step lies between two samplings)."""

    def __init__(self, dtype: str):
        if dtype not in ("bfloat16", "float32"):
            raise ValueError(f"generation dtype {dtype!r}: resolve `auto` first")
        self.dtype = dtype
        self.copy = None

    @torch.no_grad()
    def of(self, policy):
        if self.dtype == "float32":
            return policy
        weights = merged_weights(policy)
        if self.copy is None:
            plain = policy.get_base_model() if isinstance(policy, PeftModel) else policy
            # Built without its adapter: copying the PEFT-wrapped modules would double LoRA.
            with _without_lora(policy):
                self.copy = copy.deepcopy(plain).to(torch.bfloat16).eval()
            # Marked trainable although nothing trains it (sampling runs under no_grad): for
            # frozen weights torch.matmul copies the LM head once per sequence at the
            # prefill's last position, 1.3 s of a 1.7 s prefill of the default model.
            self.copy.requires_grad_(True)
        for name, param in self.copy.named_parameters():
            param.copy_(weights[name])
        return self.copy


class _without_lora:
    """For the duration, a PEFT policy's LoRA layers are replaced by their base layers, so
    that a deep copy of the base model is a plain model."""

    def __init__(self, policy):
        self.swapped = []
        if isinstance(policy, PeftModel):
            base = policy.get_base_model()
            for name, module in list(base.named_modules()):
                if isinstance(module, LoraLayer):
                    parent, _, child = name.rpartition(".")
                    self.swapped.append((base.get_submodule(parent), child, module))

    def __enter__(self):
        for parent, child, module in self.swapped:
            setattr(parent, child, module.get_base_layer())

    def __exit__(self, *exc):
        for parent, child, module in self.swapped:
            setattr(parent, child, module)
