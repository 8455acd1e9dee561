"""The update: a list of training items (pairs, examples, responses) -> optimizer steps, on
one process or several (DDP, DeepSpeed ZeRO), with gradient accumulation. It owns what is
trained: the policy's trainable weights, any extra module (PPO's value head) and the
optimizer, and reads and writes them for checkpoints."""

from __future__ import annotations

import itertools
from contextlib import nullcontext

import torch
from accelerate.utils import gather_object

from ple import zero


def share(accelerator, items: list) -> list:
    """This process's contiguous share of a list every process holds (all of it when there
    is one process; the first processes get one more when it does not divide)."""
    with accelerator.split_between_processes(items) as part:
        return part


def gather(accelerator, *shares: list) -> tuple[list, ...]:
    """Each list's shares from every process, concatenated in process order: the inverse of
    `share`. One collective call; every process gets the whole lists."""
    if accelerator.num_processes == 1:
        return shares
    parts = gather_object([shares])
    return tuple([x for part in parts for x in part[i]] for i in range(len(shares)))


class Updater:
    """Optimizer steps for a prepared model and optimizer (accelerator.prepare).

    `extra_modules` are trained beside the policy (name -> module); their parameters are
    clipped with the policy's and checkpointed as `name.param`. `param_groups` is the
    optimizer's as torch's AdamW holds them (what checkpoints store; ZeRO replaces its own)."""

    def __init__(self, accelerator, model, optimizer, extra_modules: dict, args,
                 deepspeed: bool, param_groups: list):
        self.accelerator, self.model, self.optimizer = accelerator, model, optimizer
        self.extra_modules, self.args, self.deepspeed = extra_modules, args, deepspeed
        self.param_groups = param_groups

    @property
    def size(self) -> int:
        """Items one optimizer step covers, over all processes."""
        a = self.args
        return a.train_batch_size * a.gradient_accumulation_steps * self.accelerator.num_processes

    def steps(self, items: list, loss_fn) -> list[dict]:
        """Optimizer steps over `items` (the same list, in the same order, on every process),
        each on the next `size` of them.

        Each process takes its share of a step's items and runs `loss_fn` on it in chunks of
        at most train_batch_size, one forward and backward each (gradient accumulation).
        `loss_fn(chunk)` returns a dict of scalar tensors that are means over the chunk's
        items ("loss" is minimised) and of lists with one value per item. Returns one dict
        per step, each scalar averaged over all the step's items and each list in item
        order, plus `grad_norm`, the step's gradient norm before clipping: on any number of
        processes, what one process would return with the step's items as a single chunk,
        and the same update."""
        acc, size, processes = self.accelerator, self.args.train_batch_size, \
            self.accelerator.num_processes
        params = list(itertools.chain(self.model.parameters(),
                                      *(m.parameters() for m in self.extra_modules.values())))
        self.model.train()
        steps, norms = [], []
        for start in range(0, len(items), self.size):
            batch = items[start:start + self.size]
            mine = share(acc, batch)
            # DDP's all-reduce waits for every process's backward: a process with no item of
            # this step joins it with one item weighted 0.
            chunks = [mine[i:i + size] for i in range(0, len(mine), size)] or [batch[:1]]
            logged: dict = {}
            for j, chunk in enumerate(chunks):
                weight = len(chunk) / len(batch) if mine else 0.0
                last = j == len(chunks) - 1
                # Gradients are all-reduced once per step, in its last backward.
                with nullcontext() if last or self.deepspeed else acc.no_sync(self.model):
                    out = loss_fn(chunk)
                    # The chunk's mean, weighted by its share of the step (Eqs. 3-4 divide
                    # by the step's pairs), times the processes DDP (and ZeRO) average over.
                    loss = out["loss"] * (weight * processes)
                    if self.deepspeed:
                        self.model.set_gradient_accumulation_boundary(last)
                        self.model.backward(loss)
                    else:
                        acc.backward(loss)
                for key, value in out.items():
                    if isinstance(value, list):
                        logged[key] = logged.get(key, []) + (value if mine else [])
                    else:
                        logged[key] = logged.get(key, 0.0) + weight * float(value.detach())
            if self.deepspeed:  # clips at max_grad_norm (zero.configure), steps, zeroes
                self.model.step()
                norms.append(float(self.model.get_global_grad_norm()))
            else:
                norms.append(float(acc.clip_grad_norm_(params, self.args.max_grad_norm)))
                self.optimizer.step()
                self.optimizer.zero_grad()
            steps.append(logged)
        if processes > 1:
            steps = [{key: [x for p in parts for x in p[key]] if isinstance(parts[0][key], list)
                      else sum(p[key] for p in parts) for key in parts[0]}
                     for parts in zip(*gather_object([steps]))]
        # The norm is of the all-reduced gradient: the same on every process.
        return [{**step, "grad_norm": norm} for step, norm in zip(steps, norms)]

    # --- for checkpoints ---------------------------------------------------------------------
    def trainable(self) -> dict:
        """The trained parameters by name (extra modules' as `name.param`)."""
        model = self.accelerator.unwrap_model(self.model)  # DDP would prefix `module.`
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for name, module in self.extra_modules.items():
            params.update({f"{name}.{n}": p for n, p in module.named_parameters()})
        return params

    def state(self) -> tuple[dict, dict]:
        """The trainable weights (fp32) and the optimizer's state dict, as AdamW on one
        process holds them, whatever the launch. Collective under DeepSpeed."""
        params = self.trainable()
        if not self.deepspeed:
            return params, self.optimizer.state_dict()
        return (zero.full_parameters(params),
                zero.optimizer_state(self.optimizer, params, self.param_groups))

    def load_state(self, weights: dict, optimizer_state: dict) -> None:
        """Put `state()`'s weights and optimizer state back. Collective under DeepSpeed."""
        params = self.trainable()
        if self.deepspeed:
            zero.load(self.optimizer, params, weights, optimizer_state)
            return
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor)
        self.optimizer.load_state_dict(optimizer_state)
