"""The base of every online method: a transformers.Trainer, as TRL's GRPOTrainer is.

One training step of Trainer is one step of Algorithm 1 and one optimizer step. Where Trainer
prepares its inputs (`_prepare_inputs`), the step's queries are sampled and scored and the
method turns them into the items it trains on (PLE: the replayed pairs; RAFT: the best
responses); where Trainer computes the loss (`compute_loss`), the method's loss is computed
on this process's share of them. Trainer does the rest: optimizer and learning-rate
schedule, gradient accumulation, DDP and DeepSpeed, logging to report_to, callbacks,
checkpoints (save_steps, save_total_limit) and resume. ple adds what Trainer has no place for:
metrics.jsonl and samples.jsonl (ple.run_writer), what a method keeps between steps (PLE's
replay buffer, tau's scale) in every checkpoint, and checkpoints renamed into place only
when complete, so that a crash while writing one leaves the previous one to resume from.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import random
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate.utils import DistributedType, gather_object, set_seed
from peft import LoraConfig, get_peft_model
from transformers import Trainer
from transformers.trainer_utils import (PREFIX_CHECKPOINT_DIR, get_last_checkpoint,
                                        rotate_checkpoints)
from trl.models import unwrap_model_for_generation

from ple import losses
from ple.config import PLEConfig, TrainConfig
from ple.errors import UserError
from ple.evaluation.heldout import eval_row, evaluate_plain
from ple.inputs import dataset_queries, resolve_model
from ple.model_card import write_model_card
from ple.models import init_kwargs, saved_base
from ple.plot import plot_reward_curves
from ple.rewards import resolve_rewards, reward_model_id
from ple.rollout import Prompter, check_context, decode, length_filter, sample
from ple.run_writer import RunWriter
from ple.sampling_model import sampling_model
from ple.sequences import pack, response_token_logprobs
from ple.tasks import TASKS, builtin_queries, load_queries, load_sft_pairs

# Launch types the online methods do not run under: one process, DDP or DeepSpeed.
UNSUPPORTED = (DistributedType.FSDP, DistributedType.MEGATRON_LM, DistributedType.XLA)
STATE_FILE = "ple_state.json"  # a checkpoint's ple part, written last
STAGING = ".staging"  # where a checkpoint is written before it is renamed into place

log = logging.getLogger(__name__)


def make_prompter(args: TrainConfig, tokenizer, info: dict | None = None) -> Prompter:
    """Prompts with the chat template when the tokenizer has one (or as configured); `info`
    holds what dataset rows say about their queries (ple.inputs.QueryInfo). The principle is
    PLE's setting, else the task's (which only bounds the prompt length of other methods)."""
    task = TASKS[args.task]
    use_chat = args.chat_template
    if use_chat is None:
        use_chat = tokenizer.chat_template is not None
    elif use_chat and tokenizer.chat_template is None:
        raise UserError("config key `chat_template` = true: the tokenizer has no chat template")
    principle = args.principle_text if isinstance(args, PLEConfig) else None
    return Prompter(tokenizer, task, principle or task.principle, use_chat, info or {})


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


def micro_batches(items: list, accelerator, accumulation: int) -> list[tuple[list, float]]:
    """A step's items (the same list on every process) as this process's
    `accumulation` micro-batches, each with its weight: its share of the step's items.

    A process with no item joins each backward pass (DDP's all-reduce waits for every
    process) with one item weighted 0."""
    mine = share(accelerator, items)
    size = -(-len(mine) // accumulation) if mine else 0
    chunks = [mine[i * size:(i + 1) * size] for i in range(accumulation)]
    return [(chunk, len(chunk) / len(items)) if chunk else (items[:1], 0.0) for chunk in chunks]


def scalars(row: dict) -> dict:
    """The numbers of a metrics row, as trackers take them: nested dicts (purity per
    margin) flattened to `purity/0.05`, nulls left out."""
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in value.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = value
    return flat


@contextmanager
def loaded_whole(args):
    """Under DeepSpeed ZeRO-3 transformers loads a model already partitioned over the
    processes; ple loads it whole (as accelerate's zero3_init_flag false says), so that a
    frozen copy of it works on its own, and Trainer partitions the policy when it prepares
    it."""
    if args.deepspeed_plugin is None:
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        args.deepspeed_plugin.set_deepspeed_weakref()


class StepIndex(torch.utils.data.Dataset):
    """Trainer's training data: (step, micro-batch) for each backward pass. The queries of
    a step are a pure function of (seed, step) (OnlineTrainer._queries_for_step), so a
    resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, steps: int, accumulation: int):
        self.steps, self.accumulation = steps, accumulation

    def __len__(self) -> int:
        return self.steps * self.accumulation

    def __getitem__(self, i: int) -> dict:
        return {"step": i // self.accumulation + 1, "micro": i % self.accumulation}


class OnlineTrainer(Trainer):
    """A transformers.Trainer that samples its own training data, the base of PLE, RAFT and
    PPO.

    A method subclasses it, names its config class in `config_class`, and implements
    `_rollout(step, queries)` (sample, score, write the samples rows; returns the items one
    optimizer step trains on and the step's metrics) and `_loss(items)` (a dict of scalar
    tensors, means over the items; "loss" is minimised). Its line in ple.methods lets
    `ple train` run it.

    The arguments are GRPOTrainer's, in its order:

    Args:
        model: a name as `--model` takes it (hub id, local directory, .gguf file, `default`,
            `tiny`), or a loaded causal LM.
        reward_funcs: R(x, y): a reward function with TRL's signature (prompts, completions,
            completion_ids, and the dataset's columns as keyword arguments), a reward spec
            (`vader`, a sequence-classifier directory or hub id, a built-in trained reward
            such as `imdb-sentiment`, `module:function`), a ple reward object, or a list of
            these, summed with `args.reward_weights`. Default: `args.reward`, or the task's
            offline reward.
        args: the run configuration, of the method's config class (PLEConfig, RAFTConfig,
            PPOConfig; default: its defaults). A transformers.TrainingArguments.
        train_dataset: rows with a `prompt` (text, or a conversation as a list of messages),
            optionally a `principle` (that row's principle prompt) and any other columns,
            which reward functions receive (ple.inputs). A `datasets.Dataset` or a list of
            dicts. Default: `args.data`, or the task's built-in training queries.
        eval_dataset: held-out rows of the same form, measured before and after training
            (and every `args.eval_steps`). Default: the first `args.eval_queries` of the
            task's built-in held-out queries.
        processing_class: the tokenizer of a loaded `model` (default: its saved one).
        callbacks: `transformers.TrainerCallback`s, as Trainer takes them.
        optimizers: (optimizer, lr_scheduler), as Trainer takes them (default: Trainer's,
            from args).
        peft_config: a `peft.LoraConfig` (or other PEFT config) to train an adapter; None
            trains every weight, as in TRL. (`ple train` builds the paper's LoRA, r = 8,
            alpha = 16 on all linear modules, from the config's lora_* fields.)

    config.yaml in `args.output_dir` records what actually ran: the model's name, the
    reward's spec, the data, the adapter's settings.
    """

    config_class: type[TrainConfig] = TrainConfig

    def __init__(self, model="default", reward_funcs=None, args: TrainConfig | None = None,
                 train_dataset=None, eval_dataset=None, processing_class=None, callbacks=None,
                 optimizers=(None, None), peft_config=None):
        if args is not None and not isinstance(args, self.config_class):
            raise TypeError(f"{type(self).__name__} takes args={self.config_class.__name__}"
                            f"(...), not a {type(args).__name__}")
        args = dataclasses.replace(args or self.config_class())  # a copy: it records the run
        if not isinstance(model, str) and args.model_init_kwargs:
            log.warning("model_init_kwargs are for a model given by name; the model given "
                        "is loaded already, so they are ignored (as TRL does)")
        with loaded_whole(args):
            model, tokenizer, args.model = resolve_model(
                model, processing_class, args.seed,
                init_kwargs(args.model_init_kwargs, lora=peft_config is not None,
                            bf16=args.bf16))
        self.model_dtype = str(model.dtype).removeprefix("torch.")  # summary.json: what ran
        task = TASKS[args.task]
        if train_dataset is None:
            queries, info = load_queries(task, args.data), {}
        else:
            queries, info = dataset_queries(train_dataset, "train_dataset")
            args.data = f"(train_dataset given in Python: {len(queries)} rows)"
        if eval_dataset is None:
            eval_queries = builtin_queries(args.task, "heldout")[:args.eval_queries]
        else:
            eval_queries, eval_info = dataset_queries(eval_dataset, "eval_dataset")
            info = {**eval_info, **info}
            args.eval_queries = len(eval_queries)
        if args.eval_steps and not eval_queries:
            raise UserError("config key `eval_steps`: needs held-out queries (eval_queries, "
                            "or an eval_dataset)")
        self.reward = resolve_rewards(reward_funcs, args.reward_weights, args.reward,
                                      args.task, args.reward_label, info)
        args.reward = self.reward.name
        args.use_lora = peft_config is not None
        if isinstance(peft_config, LoraConfig):
            args.lora_r, args.lora_alpha = peft_config.r, peft_config.lora_alpha
            args.lora_dropout = peft_config.lora_dropout
        tokenizer.padding_side = "left"
        self.prompter = make_prompter(args, tokenizer, info)
        self.queries, self.dropped = length_filter(self.prompter, queries,
                                                   args.max_prompt_tokens, "data")
        self.eval_queries = length_filter(self.prompter, eval_queries,
                                          args.max_prompt_tokens, "eval")[0]
        self.sft_pairs = load_sft_pairs(task, args.sft_data) if args.sft_data else []
        check_context(self.prompter, self.queries, args.max_new_tokens,
                      getattr(model.config, "max_position_embeddings", None))
        # Full fine-tuning needs a frozen copy to measure drift or to be the reference of a
        # KL penalty; LoRA just disables itself.
        self.frozen_base = None
        if peft_config is not None:
            set_seed(args.seed + args.process_index)  # the adapter's initial weights
            model = get_peft_model(model, peft_config)
        elif self.eval_queries or self._uses_reference(args):
            self.frozen_base = copy.deepcopy(model).eval().requires_grad_(False)
        super().__init__(model=model, args=args, data_collator=lambda rows: rows[0],
                         eval_dataset=self.eval_queries or None, processing_class=tokenizer,
                         callbacks=callbacks, optimizers=optimizers)
        if self.accelerator.distributed_type in UNSUPPORTED:
            raise UserError(f"accelerate's distributed_type "
                            f"{self.accelerator.distributed_type.value}: the online methods "
                            f"run on one process, or several under DDP or DeepSpeed ZeRO "
                            f"(configs/accelerate/); see docs/scaling.md")
        # We compute the loss of every backward pass as its share of the step's (see
        # compute_loss), so Trainer must not divide it again by the accumulation steps.
        self.loss_is_scaled_for_ga = True
        # Seed + process index: the processes sample their shares of a step's queries with
        # different random streams. Process 0 of N is seeded as a single process is.
        set_seed(args.seed, device_specific=True)
        # Everything that reads the policy's tensors sits on its device.
        if hasattr(self.reward, "to"):
            self.reward.to(self.accelerator.device)
        if self.frozen_base is not None:
            self.frozen_base.to(self.accelerator.device)
        self.sampling = sampling_model(args.generation_dtype, self.accelerator.device,
                                       sharded=self.is_deepspeed_enabled)
        args.generation_dtype = self.sampling.dtype
        self.vllm = None
        if args.generation_backend == "vllm":
            from ple.vllm_backend import VLLMSampler

            with self.whole_model() as whole:
                self.vllm = VLLMSampler(args, whole, tokenizer)
        self.writer = RunWriter(Path(args.output_dir), self.accelerator)
        self.metrics: list[dict] = []  # metrics.jsonl's rows
        self.summary: dict = {}  # train()'s, for the model card of a later save_model
        self.totals = {"generated_responses": 0, "generated_tokens": 0, "optimizer_steps": 0}
        self._epoch_orders: dict[int, list[str]] = {}
        self._micro: list[tuple[list, float]] = []  # this step's micro-batches
        self._row: dict | None = None  # this step's metrics row, until it is written
        self._sums: dict[str, float] = {}  # this step's loss terms, weighted by share
        self._lists: dict[str, list] = {}  # and those with one value per item
        self._last_evaluation: tuple[int, dict] | None = None  # (step, evaluate_plain's)
        self._evaluate_first = False  # eval_before is still to be measured
        self._setup()

    def _setup(self) -> None:
        """What a method adds to the trainer once it is made (PLE: D_train)."""

    @property
    def tokenizer(self):
        return self.processing_class

    # --- data ---------------------------------------------------------------------------
    def get_train_dataloader(self):
        """Every process walks all (step, micro-batch) indices; _prepare_inputs takes its
        share of a step's items."""
        a = self.args
        return torch.utils.data.DataLoader(StepIndex(a.max_steps, a.gradient_accumulation_steps),
                                           batch_size=1, collate_fn=self.data_collator)

    def _queries_for_step(self, step: int) -> list[str]:
        """Algorithm 1 line 5: the query mini-batch of `step`. The queries are walked in a
        shuffled order, reshuffled every epoch; a pure function of (seed, step)."""
        n, size = len(self.queries), self.args.batch_size
        batch = []
        for i in range((step - 1) * size, step * size):
            epoch, index = divmod(i, n)
            if epoch not in self._epoch_orders:
                order = list(self.queries)
                random.Random(self.args.seed * 1_000_003 + epoch).shuffle(order)
                self._epoch_orders = {epoch: order}
            batch.append(self._epoch_orders[epoch][index])
        return batch

    # --- the step: inputs and loss ---------------------------------------------------------
    def _prepare_inputs(self, inputs: dict) -> dict:
        """The first backward pass of a step runs the step's rollout; each pass gets its
        micro-batch of the items the rollout returned."""
        if inputs["micro"] == 0:
            if self._evaluate_first:
                self.summary["eval_before"] = self._evaluate_plain()
                self._evaluate_first = False
            step = inputs["step"]
            t0 = time.perf_counter()
            items, self._row = self._rollout(step, self._queries_for_step(step))
            self._row["seconds_rollout"] = time.perf_counter() - t0
            self._micro = micro_batches(items, self.accelerator,
                                        self.args.gradient_accumulation_steps)
            self._sums, self._lists = {}, {}
            self._t_train = time.perf_counter()
        return {"micro": self._micro[inputs["micro"]]}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The method's loss on a micro-batch, weighted by the micro-batch's share of the
        step's items and multiplied by the processes DDP averages over: the gradients of a
        step add up to that of the mean loss over all its items, on any number of
        processes and accumulation steps."""
        items, weight = inputs["micro"]
        if not items:
            # Nothing to train on this step (PLE without L_weighted-sft, no pair over tau):
            # no gradient at all, so that the optimizer leaves every weight as it is.
            return torch.zeros((), device=self.accelerator.device, requires_grad=True)
        out = self._loss(items)
        for key, value in out.items():
            if isinstance(value, list):
                self._lists[key] = self._lists.get(key, []) + (value if weight else [])
            else:
                self._sums[key] = self._sums.get(key, 0.0) + weight * float(value.detach())
        return out["loss"] * (weight * self.accelerator.num_processes)

    def _rollout(self, step: int, queries: list[str]) -> tuple[list, dict]:
        """Sample and score for the step's queries, write their samples rows
        (self.writer.sample); returns the items this step's optimizer step trains on (the
        same list on every process) and the step's metrics row so far, with `n_updates`,
        the optimizer steps the step makes."""
        raise NotImplementedError

    def _loss(self, items: list) -> dict:
        """The method's loss terms on some of a step's items: scalar tensors that are means
        over them ("loss" is minimised) and lists with one value per item."""
        raise NotImplementedError

    def _finish_row(self, row: dict, terms: dict) -> dict:
        """The step's metrics row from its rollout's row and the loss terms, averaged over
        the step's items (lists: in item order), with the gradient norm before clipping."""
        return {**row, **terms}

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        """The parameters training changes, by name."""
        model = self.accelerator.unwrap_model(self.model_wrapped)
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def _step_terms(self) -> dict:
        """The step's loss terms from every process: scalars averaged over the step's items,
        lists concatenated in item order."""
        sums, lists = self._sums, self._lists
        if self.accelerator.num_processes > 1:
            parts = gather_object([(sums, lists)])
            sums = {k: sum(p[0][k] for p in parts) for k in sums}
            lists = {k: [x for p in parts for x in p[1][k]] for k in lists}
        return {**sums, **lists}

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, model, trial, epoch,
                                 ignore_keys_for_eval, start_time, learning_rate=None):
        # Called after every optimizer step (and once after the last): the step's row is
        # complete here, then evaluated into (evaluate) and written before any checkpoint.
        if self._row is not None and "grad_norm" not in self._row:
            self.totals["optimizer_steps"] += self._row["n_updates"]
            terms = {**self._step_terms(),
                     "grad_norm": float(grad_norm) if grad_norm is not None else None}
            self._row = self._finish_row(self._row, terms)
            self._row.update(learning_rate=learning_rate,
                             seconds_train=time.perf_counter() - self._t_train,
                             **self.totals)
            # TRL's names for what means the same (GRPOTrainer's logs), beside ple's.
            self._row["reward"] = self._row["reward_mean"]
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, model, trial, epoch,
                                         ignore_keys_for_eval, start_time, learning_rate)
        self._write_row()

    def _write_row(self) -> None:
        if self._row is not None and "grad_norm" in self._row:
            self.writer.log(self._row)
            self.metrics.append(self._row)
            self._row = None

    def log(self, logs: dict, start_time: float | None = None) -> None:
        """Trainer's log, with the method's metrics of the steps since the last log
        averaged in (as GRPOTrainer logs its own; nested ones, purity per margin, as
        `purity/0.05`), and with wandb in report_to, the last step's samples as a
        `completions` table (for PLE: query, y, y', s, s', branch, w)."""
        if "loss" in logs and self.state.global_step:
            rows = [scalars(r) for r in self.metrics + ([self._row] if self._row else [])
                    if r["step"] > self.state.global_step - self.args.logging_steps]
            for key in sorted({k for r in rows for k in r} - set(logs) - {"step"}):
                values = [r[key] for r in rows if key in r]
                logs[key] = sum(values) / len(values)
            samples = self.writer.step_samples
            if "wandb" in self.args.report_to and samples and self.is_world_process_zero():
                import wandb

                wandb.log({"completions": wandb.Table(
                    columns=list(samples[0]), data=[list(r.values()) for r in samples])})
        super().log(logs, start_time)

    # --- sampling ------------------------------------------------------------------------
    @contextmanager
    def whole_model(self):
        """The policy unwrapped from DDP or DeepSpeed, every weight whole on this process:
        under ZeRO-3, where each process holds a shard, the weights are gathered for the
        duration (so every process must enter together)."""
        with unwrap_model_for_generation(
                self.model_wrapped, self.accelerator,
                gradient_checkpointing_kwargs=self.args.activation_checkpointing_kwargs) as m:
            yield m

    def _sample(self, prompts: list[list[int]]) -> tuple[list, list]:
        """Response token ids and texts for prompts, in ONE batched generate call."""
        a = self.args
        with self.whole_model() as model:
            if self.vllm is not None:
                responses = self.vllm.sample(model, prompts)
            else:
                with self.accelerator.autocast():
                    responses = sample(self.sampling.of(model), self.tokenizer, prompts,
                                       a.max_new_tokens, a.temperature, a.top_p, a.top_k)
        return responses, decode(self.tokenizer, responses)

    def _count_generated(self, responses: list[list[int]]) -> None:
        """The generation budget; evaluation samples are not part of it."""
        self.totals["generated_responses"] += len(responses)
        self.totals["generated_tokens"] += sum(len(r) for r in responses)

    def _sft_losses(self, examples: list[tuple[list[int], list[int]]]) -> dict:
        """SFT (Eq. 1) on (prompt ids, response ids) examples, averaged over them."""
        batch = pack([p for p, _ in examples], [r for _, r in examples],
                     self.tokenizer.pad_token_id)
        token_logps = response_token_logprobs(self.model_wrapped, batch)
        mask = batch["response_mask"].to(token_logps.device)
        return {"loss": losses.sft_loss(losses.sequence_logprob(token_logps, mask)).mean()}

    def _uses_reference(self, args) -> bool:
        """Whether the method reads the frozen base model's log-probs (reference_logprobs)."""
        return False

    @torch.no_grad()
    def reference_logprobs(self, batch: dict) -> torch.Tensor:
        """[N, R] log-probs of a packed batch's response tokens under the frozen base model
        (the reference of a KL penalty): the LoRA policy with its adapter disabled, or the
        frozen copy under full fine-tuning."""
        if self.frozen_base is not None:
            return response_token_logprobs(self.frozen_base, batch)
        model = self.accelerator.unwrap_model(self.model_wrapped)
        with model.disable_adapter():
            return response_token_logprobs(model, batch)

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix=None):
        """Plain responses to the held-out queries (see evaluate_plain): their mean reward,
        KL from the base model, perplexity under it and distinct-n, as eval_* metrics,
        logged, passed to the callbacks' on_evaluate and added to this step's metrics row."""
        evaluation = self._evaluate_plain()
        self._last_evaluation = (self.state.global_step, evaluation)
        metrics = eval_row(evaluation)
        if self._row is not None:
            self._row.update(metrics)
        self.log(dict(metrics))
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control,
                                                         metrics)
        return metrics

    def _evaluate_plain(self) -> dict:
        with self.whole_model() as model:
            return evaluate_plain(model, self.tokenizer, self.prompter, self.reward,
                                  self.eval_queries, self.args, self.frozen_base,
                                  progress=self.accelerator.is_main_process,
                                  sampler=self.sampling.of(model))

    # --- the run ---------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: bool | str | None = None, **kwargs):
        """Run the method for args.max_steps steps; returns the run's summary.

        `resume_from_checkpoint`: True continues from the newest checkpoint in
        args.output_dir, a path from that checkpoint (OUTPUT_DIR/checkpoint-N)."""
        a = self.args
        if resume_from_checkpoint:
            resume_from_checkpoint = self._restore(resume_from_checkpoint)
        else:
            resume_from_checkpoint = None
            self.writer.start(a)
            self.summary = {"queries": len(self.queries),
                            "queries_dropped_too_long": self.dropped,
                            "processes": self.accelerator.num_processes,
                            "distributed_type": self.accelerator.distributed_type.value,
                            "reward_model": reward_model_id(self.reward),
                            "model_dtype": self.model_dtype}
            if self.dropped and self.accelerator.is_main_process:
                log.warning("dropped %d of %d queries longer than max_prompt_tokens = %d",
                            self.dropped, self.dropped + len(self.queries), a.max_prompt_tokens)
            if self.sft_pairs and a.sft_steps:
                self._sft_warmup()
            # Measured in the first step, once Trainer has prepared the model (under ZeRO-3
            # its weights can then be gathered).
            self._evaluate_first = bool(self.eval_queries)
        with self.writer.open():
            super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        summary = self.summary
        self.save_model()
        if self.eval_queries:
            # Trainer evaluates after the last step (eval_steps), which is this evaluation.
            # (With load_best_model_at_end the model is another checkpoint's: measured again.)
            last = self._last_evaluation
            summary["eval_after"] = last[1] if last and last[0] == self.state.global_step \
                and not a.load_best_model_at_end else self._evaluate_plain()
        summary["steps"] = self.state.global_step
        self.writer.finish(a, self._saved_dir(Path(a.output_dir)), self.metrics, summary)
        if a.push_to_hub:
            self.push_to_hub()
        self.accelerator.wait_for_everyone()
        return summary

    def _sft_warmup(self) -> None:
        """Algorithm 1 line 2: initialise the policy with SFT (Eq. 1) on supervised pairs,
        sft_steps optimizer steps of batch_size pairs, before the run's own optimizer (and
        its learning-rate schedule) starts."""
        rng = random.Random(self.args.seed)
        eos = [self.tokenizer.eos_token_id]
        optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                      lr=self.args.learning_rate,
                                      weight_decay=self.args.weight_decay)
        self.model.train()
        for _ in range(self.args.sft_steps):
            chosen = rng.sample(self.sft_pairs, min(self.args.batch_size, len(self.sft_pairs)))
            loss = self._sft_losses([(self.prompter.ids(q),
                                      self.tokenizer(r, add_special_tokens=False)["input_ids"]
                                      + eos) for q, r in chosen])["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()

    # --- saving ------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """transformers.Trainer's save_model: the trained adapter (or whole model), its
        tokenizer and a model card README.md in `output_dir` itself, which
        AutoPeftModelForCausalLM.from_pretrained(output_dir) loads (a whole model:
        AutoModelForCausalLM). The adapter names as its base model the directory the policy
        was loaded from, for `default` and `tiny` ple's cached copy; the card names the Hub
        id, where there is one (ple.models.saved_base, hub_id).

        Without `output_dir`: the run's own OUTPUT_DIR/adapter (or /model) and plots, as
        train() writes them (the output directory's contract: no tokenizer beside an
        adapter there). Checkpoints save as Trainer does."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        with self.whole_model() as model:
            if not self.accelerator.is_main_process:
                return
            if output_dir is None:
                self._save_run(Path(self.args.output_dir), model)
            else:
                self.writer.export(model, Path(output_dir), self.tokenizer, self.args,
                                   self.metrics, self.summary)

    def push_to_hub(self, commit_message: str = "End of training", **kwargs) -> str | None:
        """transformers.Trainer's push_to_hub: upload the model as save_model writes it (the
        adapter naming its base model by Hub id) and the run's config.yaml, metrics.jsonl,
        summary.json and plots to args.hub_model_id (default: output_dir's name). train()
        calls it when args.push_to_hub. Returns the commit's URL (None on the other
        processes)."""
        with self.whole_model() as model:
            if not self.accelerator.is_main_process:
                return None
            return self.writer.push(model, self.tokenizer, self.args, self.metrics,
                                    self.summary, commit_message)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Trainer uploads every checkpoint with push_to_hub; ple uploads the trained model
        once, after training (push_to_hub)."""

    def init_hf_repo(self, token: str | None = None) -> None:
        """Trainer creates the Hub repository when it is made; ple's push_to_hub creates it
        when it uploads, after training (ple.hub)."""
        self.push_in_progress = None

    def _save_run(self, out: Path, model) -> None:
        """Write the run's adapter (or model) and the plots, on the main process; `model` is
        the whole policy. Methods extend it with what they save besides."""
        saved = self._saved_dir(out)
        self.writer.save_model(model, saved, self.tokenizer, saved_base(model, self.args.model))
        if "steps" in self.summary:  # saved again after train(): PEFT's card replaced again
            write_model_card(saved, self.args, self.metrics, self.summary)
        plot_reward_curves(self.metrics, out / "reward_curves.png")

    def _saved_dir(self, out: Path) -> Path:
        return out / ("adapter" if self.args.use_lora else "model")

    # --- checkpoints -------------------------------------------------------------------------
    def _get_output_dir(self, trial) -> str:
        return self._staging or super()._get_output_dir(trial)

    _staging: str | None = None

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, written into OUTPUT_DIR/.staging and renamed into place
        when complete, with ple's part: what the method keeps between steps and how long
        metrics.jsonl and samples.jsonl were (rows after it are cut off on resume)."""
        self._write_row()
        out = Path(self.args.output_dir)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._staging = str(out / STAGING)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()  # DeepSpeed: every process writes its shard
        if self.accelerator.is_main_process:
            state = {"totals": self.totals, "summary": self.summary,
                     "method": self._method_state(), **self.writer.lengths()}
            staged = out / STAGING / name
            self._write_method_files(staged)
            (staged / STATE_FILE).write_text(json.dumps(state))
            shutil.rmtree(out / name, ignore_errors=True)
            staged.rename(out / name)
            shutil.rmtree(out / STAGING)  # and what a crash left there
            rotate_checkpoints(output_dir=str(out), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint,
                               use_mtime=False)
        self.accelerator.wait_for_everyone()

    def _method_state(self) -> dict:
        """What a method measures during a run and needs to go on (JSON), beside what
        Trainer checkpoints: saved with every checkpoint."""
        return {}

    def _write_method_files(self, folder: Path) -> None:
        """Files a method adds to a checkpoint (PLE: its replay buffer). Main process."""

    def _load_method_state(self, state: dict, folder: Path) -> None:
        """Take back what `_method_state` and `_write_method_files` saved (resuming)."""

    def _restore(self, chosen: bool | str) -> str:
        """ple's part of the newest checkpoint (or `chosen`): the method's state, the totals,
        the summary so far, metrics.jsonl and samples.jsonl cut back to it. Returns the
        checkpoint for Trainer to load the rest from."""
        out = Path(self.args.output_dir)
        found = get_last_checkpoint(str(out)) if chosen is True else str(chosen)
        if found is None or not (Path(found) / STATE_FILE).is_file():
            where = f"{out}" if chosen is True else f"resume_from_checkpoint {chosen}:"
            raise UserError(f"--resume: no complete checkpoint in {where}" if chosen is True
                            else f"{where} not a complete checkpoint of a ple run")
        processes = self.accelerator.num_processes
        saved_processes = max(1, len(list(Path(found).glob("rng_state_*.pth"))))
        if saved_processes != processes:
            raise UserError(f"--resume: checkpoint {found} was written by {saved_processes} "
                            f"process(es), this run has {processes}; resume with as many "
                            f"(accelerate launch --num_processes {saved_processes}), so that "
                            f"each continues its random stream")
        state = json.loads((Path(found) / STATE_FILE).read_text())
        self.totals, self.summary = state["totals"], state["summary"]
        self._load_method_state(state["method"], Path(found))
        self.metrics = self.writer.rewind(state)
        if self.accelerator.is_main_process:
            step = int(re.search(r"(\d+)$", found).group(1))
            log.info("resuming after step %d from %s", step, found)
        return found
