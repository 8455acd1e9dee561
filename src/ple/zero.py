"""DeepSpeed ZeRO-2/3: the few places where ple must look inside DeepSpeed's engine.

Under ZeRO the optimizer holds each trainable parameter's fp32 copy and Adam moments
flattened and sharded over the processes (and, at stage 3, the model's own weights too). A
ple checkpoint stores what torch's AdamW on one process would: one fp32 tensor and one pair of
moments per trainable parameter. These functions translate between the two, with DeepSpeed's
own per-parameter accessors, so a checkpoint reads the same whoever wrote it (DDP, ZeRO-2 or
ZeRO-3). Every function is collective: all processes call it together.
"""

from __future__ import annotations

import os

import torch

ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


def launched_with_deepspeed() -> bool:
    """True under `accelerate launch` with a DeepSpeed config (accelerate's own signal)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def configure(plugin, micro_batch: int, processes: int, max_grad_norm: float) -> None:
    """ple accumulates gradients itself (ple.update.Updater.steps marks the last pass of
    each update), so DeepSpeed sees one pass per update, of `micro_batch` items a process;
    clipping is ple's `max_grad_norm`. These keys of the user's DeepSpeed config are set here."""
    config = plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = micro_batch
    config["gradient_accumulation_steps"] = 1
    config["train_batch_size"] = micro_batch * processes
    config["gradient_clipping"] = max_grad_norm
    plugin.gradient_accumulation_steps = 1


def _base_optimizer(optimizer):
    """torch's AdamW inside accelerate's wrapper and DeepSpeed's ZeRO optimizer; its state
    is keyed by ZeRO's flat fp32 shards."""
    return optimizer.optimizer.optimizer


def _flat_shards(optimizer) -> list:
    """This process's flat fp32 shards, one per parameter group (stage 3's name, or 1-2's)."""
    zero_optimizer = optimizer.optimizer
    return getattr(zero_optimizer, "fp32_partitioned_groups_flat", None) \
        or zero_optimizer.single_partition_of_fp32_groups


def full_parameters(params: dict) -> dict:
    """Each parameter's whole fp32 value (the optimizer's master copy)."""
    from deepspeed.utils import safe_get_full_fp32_param

    return {name: safe_get_full_fp32_param(p) for name, p in params.items()}


def optimizer_state(optimizer, params: dict, param_groups: list) -> dict:
    """The state dict torch's AdamW would have for `params` (in the optimizer's order):
    per-parameter moments and step, and `param_groups` as AdamW wrote them."""
    from deepspeed.utils import safe_get_full_optimizer_state

    base = _base_optimizer(optimizer)
    if not base.state:  # no optimizer step yet
        return {"state": {}, "param_groups": param_groups}
    step = next(iter(base.state.values()))["step"]
    state = {i: {"step": step.clone(),
                 **{key: safe_get_full_optimizer_state(p, key).cpu() for key in ADAM_MOMENTS}}
             for i, p in enumerate(params.values())}
    return {"state": state, "param_groups": param_groups}


def load(optimizer, params: dict, weights: dict, saved_optimizer: dict) -> None:
    """Put a checkpoint's weights and AdamW state (as `optimizer_state` returns it) into
    the model's weights, ZeRO's fp32 master copies and its sharded moments."""
    import deepspeed
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    # At stage 3 each process holds a shard: gathered, set, and sharded again on exit.
    with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=0):
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name])
    for name, p in params.items():
        safe_set_full_fp32_param(p, weights[name].to(p.device))
    if not saved_optimizer["state"]:
        return
    base = _base_optimizer(optimizer)
    step = saved_optimizer["state"][0]["step"]
    for flat in _flat_shards(optimizer):  # a fresh optimizer has no state until its first step
        base.state[flat] = {"step": step.clone(),
                            **{key: torch.zeros_like(flat) for key in ADAM_MOMENTS}}
    if hasattr(optimizer.optimizer, "_lazy_init_hp_params_optimizer_state"):
        # Stage 1-2 points each parameter at its slice of that state after the first step.
        optimizer.optimizer._lazy_init_hp_params_optimizer_state()
    for i, p in enumerate(params.values()):
        for key in ADAM_MOMENTS:
            safe_set_full_optimizer_state(p, saved_optimizer["state"][i][key].to(p.device), key)
