"""The loop every online method shares: queries -> samples -> rewards -> update, with
evaluation; the update is ple.update's, the run's files (metrics, samples, checkpoints, the
saved adapter, push_to_hub's upload) ple.run_writer's."""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs, gather_object, set_seed
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm
from trl.models import unwrap_model_for_generation

from ple import checkpoint, losses, zero
from ple.buffer import ReplayBuffer
from ple.callbacks import Callbacks
from ple.config import PLEConfig, TrainConfig, trackers
from ple.errors import UserError
from ple.evaluation.heldout import evaluate_plain
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
from ple.update import Updater

# Launch types the harness does not drive: it runs on one process, under DDP or DeepSpeed.
UNSUPPORTED = (DistributedType.FSDP, DistributedType.MEGATRON_LM, DistributedType.XLA)

# Non-reentrant checkpointing needs no gradient at the inputs, which LoRA's frozen
# embeddings do not have.
CHECKPOINTING = {"use_reentrant": False}

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

def eval_row(evaluation: dict) -> dict:
    """The numbers of an `evaluate_plain` result for a metrics.jsonl row, named eval_*
    (eval_reward_mean, ...); the samples stay out."""
    return {f"eval_{k}": v for k, v in evaluation.items() if k != "samples"}


class OnlineTrainer:
    """The loop every online method shares: sample, score, update (ple.update.Updater),
    log and checkpoint (ple.run_writer.RunWriter).

    A method subclasses it, names its config class in `config_class` (the default `args`),
    implements `_step`, which returns the metrics row of a step, and has its line in the
    table of ple.methods, which `ple train` runs it from. The arguments are TRL's
    (GRPOTrainer, RLOOTrainer), by keyword:

    Args:
        model: a name as `--model` takes it (hub id, local directory, .gguf file, `default`,
            `tiny`), or a loaded causal LM.
        args: the run configuration, of the method's config class (PLEConfig, RAFTConfig,
            PPOConfig; default: its defaults).
        train_dataset: rows with a `prompt` (text, or a conversation as a list of messages),
            optionally a `principle` (that row's principle prompt) and any other columns,
            which reward functions receive (ple.inputs). A `datasets.Dataset` or a list of
            dicts. Default: `args.data`, or the task's built-in training queries.
        eval_dataset: held-out rows of the same form, measured before and after training
            (and every `args.eval_steps`). Default: the first `args.eval_queries` of the
            task's built-in held-out queries.
        reward_funcs: R(x, y): a reward function with TRL's signature (prompts, completions,
            completion_ids, and the dataset's columns as keyword arguments), a reward spec
            (`vader`, a sequence-classifier directory or hub id, a built-in trained reward
            such as `imdb-sentiment`, `module:function`), a ple reward object, or a list of
            these, summed with `reward_weights`. Default: `args.reward`, or the task's
            offline reward.
        reward_weights: one weight per reward of `reward_funcs` (default: all 1).
        processing_class: the tokenizer of a loaded `model` (default: its saved one).
        peft_config: a `peft.LoraConfig` (or other PEFT config) to train an adapter; None
            trains every weight, as in TRL. (`ple train` builds the paper's LoRA, r = 8,
            alpha = 16 on all linear modules, from the config's lora_* fields.)
        callbacks: `transformers.TrainerCallback`s; called on_train_begin, on_step_end,
            on_log, on_evaluate, on_save and on_train_end, with this config as `args`.
            Setting `control.should_training_stop` ends training after the step.

    config.yaml in `args.output_dir` records what actually ran: the model's name, the
    reward's spec, the data, the adapter's settings.
    """

    method = ""
    config_class: type[TrainConfig] = TrainConfig

    def __init__(self, model="default", args: TrainConfig | None = None, train_dataset=None,
                 eval_dataset=None, reward_funcs=None, reward_weights=None,
                 processing_class=None, peft_config=None, callbacks=None):
        if args is not None and not isinstance(args, self.config_class):
            raise TypeError(f"{type(self).__name__} takes args={self.config_class.__name__}"
                            f"(...), not a {type(args).__name__}")
        args = dataclasses.replace(args or self.config_class())  # a copy: it records the run
        if not isinstance(model, str) and args.model_init_kwargs:
            log.warning("model_init_kwargs are for a model given by name; the model given "
                        "is loaded already, so they are ignored (as TRL does)")
        model, tokenizer, args.model = resolve_model(
            model, processing_class, args.seed,
            init_kwargs(args.model_init_kwargs, lora=peft_config is not None, bf16=args.bf16))
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
        self.reward = resolve_rewards(reward_funcs, reward_weights, args.reward, args.task,
                                      args.reward_label, info)
        args.reward = self.reward.name
        args.use_lora = peft_config is not None
        if isinstance(peft_config, LoraConfig):
            args.lora_r, args.lora_alpha = peft_config.r, peft_config.lora_alpha
            args.lora_dropout = peft_config.lora_dropout
        self.args = args
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        self.prompter = make_prompter(args, tokenizer, info)
        self.queries, self.dropped = length_filter(self.prompter, queries,
                                                   args.max_prompt_tokens, "data")
        self.eval_queries = length_filter(self.prompter, eval_queries,
                                          args.max_prompt_tokens, "eval")[0]
        self.sft_pairs = load_sft_pairs(task, args.sft_data) if args.sft_data else []
        check_context(self.prompter, self.queries, args.max_new_tokens,
                      getattr(model.config, "max_position_embeddings", None))

        cuda = torch.cuda.is_available()
        deepspeed = zero.launched_with_deepspeed()
        # accelerate starts DeepSpeed only when not told cpu=True, and finds no backend for
        # it without a GPU; DeepSpeed's CPU accelerator talks over gloo.
        self.accelerator = Accelerator(
            cpu=not cuda and not deepspeed,
            mixed_precision="bf16" if args.bf16 and cuda else "no",
            log_with=trackers(args) or None, project_dir=args.output_dir,
            kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")] if deepspeed and not cuda
            else [])
        if self.accelerator.distributed_type in UNSUPPORTED:
            raise UserError(f"accelerate's distributed_type "
                            f"{self.accelerator.distributed_type.value}: the online methods "
                            f"run on one process, or several under DDP or DeepSpeed ZeRO "
                            f"(configs/accelerate/); see docs/scaling.md")
        self.deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        # Seed + process index: the processes sample their shares of a step's queries with
        # different random streams. Process 0 of N is seeded as a single process is.
        set_seed(args.seed, device_specific=True)
        # Full fine-tuning needs a frozen copy to measure drift or to be the reference of a
        # KL penalty; LoRA just disables itself.
        self.frozen_base = None
        if peft_config is not None:
            model = get_peft_model(model, peft_config)
        elif self.eval_queries or self._uses_reference():
            self.frozen_base = copy.deepcopy(model).eval().requires_grad_(False)
        if args.gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=CHECKPOINTING)
        self.extra_modules = self._extra_modules(model)
        params = [p for p in model.parameters() if p.requires_grad]
        params += [p for m in self.extra_modules.values() for p in m.parameters()]
        optimizer = torch.optim.AdamW(params, lr=args.learning_rate,
                                      weight_decay=args.weight_decay)
        # What checkpoints store as the optimizer's param_groups (ZeRO replaces its own).
        param_groups = optimizer.state_dict()["param_groups"]
        if self.deepspeed:
            zero.configure(self.accelerator.state.deepspeed_plugin, args.train_batch_size,
                           self.accelerator.num_processes, args.max_grad_norm)
        self.model, optimizer = self.accelerator.prepare(model, optimizer)
        self.updater = Updater(self.accelerator, self.model, optimizer, self.extra_modules,
                               args, self.deepspeed, param_groups)
        # Everything that reads the policy's tensors sits on its device.
        if hasattr(self.reward, "to"):
            self.reward.to(self.accelerator.device)
        if self.frozen_base is not None:
            self.frozen_base.to(self.accelerator.device)
        self.sampling = sampling_model(args.generation_dtype, self.accelerator.device,
                                       sharded=self.deepspeed)
        args.generation_dtype = self.sampling.dtype
        self.vllm = None
        if args.generation_backend == "vllm":
            from ple.vllm_backend import VLLMSampler

            with self.whole_model() as whole:
                self.vllm = VLLMSampler(args, whole, tokenizer)
        self.callbacks = Callbacks(callbacks or [], args, self.accelerator.is_main_process)
        self.writer = RunWriter(Path(args.output_dir), self.accelerator)
        self.buffer = ReplayBuffer()  # D_train: PLE's, which sets its replay window
        self.metrics: list[dict] = []
        self.summary: dict = {}  # train()'s, for the model card of a later save_model
        self.totals = {"generated_responses": 0, "generated_tokens": 0, "optimizer_steps": 0}
        self._epoch_orders: dict[int, list[str]] = {}

    # --- data ---------------------------------------------------------------------------
    def _queries_for_step(self, step: int) -> list[str]:
        """Algorithm 1 line 5: the query mini-batch of `step`. The queries are walked in a
        shuffled order, reshuffled every epoch; a pure function of (seed, step), so a resumed
        run sees exactly the batches an uninterrupted one would."""
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

    # --- the parts of a step ---------------------------------------------------------------
    @contextmanager
    def whole_model(self):
        """The policy unwrapped from DDP or DeepSpeed, every weight whole on this process:
        under ZeRO-3, where each process holds a shard, the weights are gathered for the
        duration (so every process must enter together)."""
        with unwrap_model_for_generation(self.model, self.accelerator,
                                         gradient_checkpointing_kwargs=CHECKPOINTING) as model:
            yield model

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
        token_logps = response_token_logprobs(self.model, batch)
        mask = batch["response_mask"].to(token_logps.device)
        return {"loss": losses.sft_loss(losses.sequence_logprob(token_logps, mask)).mean()}

    def _sft_warmup(self) -> None:
        """Algorithm 1 line 2: initialise the policy with SFT (Eq. 1) on supervised pairs."""
        rng = random.Random(self.args.seed)
        eos = [self.tokenizer.eos_token_id]
        for _ in tqdm(range(self.args.sft_steps), desc="SFT warm-up",
                      disable=not self.accelerator.is_main_process):
            chosen = rng.sample(self.sft_pairs, min(self.updater.size, len(self.sft_pairs)))
            self.updater.steps([(self.prompter.ids(q),
                                self.tokenizer(r, add_special_tokens=False)["input_ids"] + eos)
                               for q, r in chosen], self._sft_losses)

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Plain responses to the held-out queries (see evaluate_plain)."""
        with self.whole_model() as model:
            return evaluate_plain(model, self.tokenizer, self.prompter, self.reward,
                                  self.eval_queries, self.args, self.frozen_base,
                                  progress=self.accelerator.is_main_process,
                                  sampler=self.sampling.of(model))

    # --- the loop --------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: bool | str | None = None) -> dict:
        """Run the method for args.max_steps steps; returns the run's summary.

        `resume_from_checkpoint`: True continues from the newest complete checkpoint in
        args.output_dir, a path from that checkpoint folder (checkpoints/step-NNNNNN)."""
        a = self.args
        if resume_from_checkpoint:
            chosen = None if resume_from_checkpoint is True else Path(resume_from_checkpoint)
            start, summary = self._restore(chosen)
        else:
            self.writer.start(a)
            start = 1
            summary = {"queries": len(self.queries), "queries_dropped_too_long": self.dropped,
                       "processes": self.accelerator.num_processes,
                       "distributed_type": self.accelerator.distributed_type.value,
                       "reward_model": reward_model_id(self.reward),
                       "model_dtype": self.model_dtype}
            if self.dropped and self.accelerator.is_main_process:
                log.warning("dropped %d of %d queries longer than max_prompt_tokens = %d",
                            self.dropped, self.dropped + len(self.queries), a.max_prompt_tokens)
            if self.sft_pairs and a.sft_steps:
                self._sft_warmup()
            if self.eval_queries:
                summary["eval_before"] = self.evaluate()
        state = self.callbacks.state
        state.global_step, state.log_history = start - 1, self.metrics  # one list, restored too
        if trackers(a):
            self.writer.start_trackers(a)
        self.callbacks("on_train_begin", model=self.model)
        bar = tqdm(range(start, a.max_steps + 1), desc=a.method.upper(), unit="step",
                   initial=start - 1, total=a.max_steps,
                   disable=not self.accelerator.is_main_process)
        with self.writer.open():
            for step in bar:
                row = self._step(step, self._queries_for_step(step))
                state.global_step = step
                if a.eval_steps and step % a.eval_steps == 0:
                    evaluation = eval_row(self.evaluate())
                    row.update(evaluation)
                    self.callbacks("on_evaluate", model=self.model, metrics=evaluation)
                self.writer.log(row)
                self.metrics.append(row)
                bar.set_postfix(self._progress(row))
                control = self.callbacks("on_step_end", model=self.model)
                self.callbacks("on_log", model=self.model, logs=row)
                stop = control.should_training_stop
                if step % a.save_steps == 0 or step == a.max_steps or stop:
                    self._checkpoint(step, summary)
                    self.callbacks("on_save", model=self.model)
                if stop:
                    break
        self.save_model()
        if self.eval_queries:
            summary["eval_after"] = self.evaluate()
            self.callbacks("on_evaluate", model=self.model,
                           metrics=eval_row(summary["eval_after"]))
        summary["steps"] = state.global_step
        self.writer.finish(a, self._saved_dir(Path(a.output_dir)), self.metrics, summary)
        self.summary = summary
        if a.push_to_hub:
            self.push_to_hub()
        self.callbacks("on_train_end", model=self.model)
        self.accelerator.wait_for_everyone()
        return summary

    def save_model(self, output_dir: str | None = None) -> None:
        """transformers.Trainer's save_model: the trained adapter (or whole model), its
        tokenizer and a model card README.md in `output_dir` itself, which
        AutoPeftModelForCausalLM.from_pretrained(output_dir) loads (a whole model:
        AutoModelForCausalLM). The adapter names as its base model the directory the policy
        was loaded from, for `default` and `tiny` ple's cached copy; the card names the Hub
        id, where there is one (ple.models.saved_base, hub_id).

        Without `output_dir`: the run's own OUTPUT_DIR/adapter (or /model) and plots, as
        train() writes them (the output directory's contract: no tokenizer beside an
        adapter there)."""
        with self.whole_model() as model:
            if not self.accelerator.is_main_process:
                return
            if output_dir is None:
                self._save(Path(self.args.output_dir), model)
            else:
                self.writer.export(model, Path(output_dir), self.tokenizer, self.args,
                                   self.metrics, self.summary)

    def push_to_hub(self, commit_message: str = "End of training") -> str | None:
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

    def _save(self, out: Path, model) -> None:
        """Write the run's adapter (or model) and the plots, on the main process; `model` is
        the whole policy. Methods extend it with what they save besides."""
        saved = self._saved_dir(out)
        self.writer.save_model(model, saved, self.tokenizer, saved_base(model, self.args.model))
        if self.summary:  # saved again after train(): PEFT's card replaced by ple's again
            write_model_card(saved, self.args, self.metrics, self.summary)
        plot_reward_curves(self.metrics, out / "reward_curves.png")

    def _saved_dir(self, out: Path) -> Path:
        return out / ("adapter" if self.args.use_lora else "model")

    def _step(self, step: int, queries: list[str]) -> dict:
        """One step of the method on a mini-batch of queries; writes its samples rows
        (self.writer.sample) and returns its metrics row."""
        raise NotImplementedError

    def _progress(self, row: dict) -> dict:
        return {"r": f"{row['reward_mean']:.2f}"}

    def _uses_reference(self) -> bool:
        """Whether the method reads the frozen base model's log-probs (reference_logprobs)."""
        return False

    @torch.no_grad()
    def reference_logprobs(self, batch: dict) -> torch.Tensor:
        """[N, R] log-probs of a packed batch's response tokens under the frozen base model
        (the reference of a KL penalty): the LoRA policy with its adapter disabled, or the
        frozen copy under full fine-tuning."""
        if self.frozen_base is not None:
            return response_token_logprobs(self.frozen_base, batch)
        model = self.accelerator.unwrap_model(self.model)
        with model.disable_adapter():
            return response_token_logprobs(model, batch)

    def _extra_modules(self, model) -> dict[str, torch.nn.Module]:
        """Modules a method trains beside the policy (PPO's value head), by name. Their
        parameters join the optimizer, gradient clipping and checkpoints (as `name.param`).
        Called once in __init__, after LoRA is added and before the optimizer is built."""
        return {}

    # --- checkpoints -------------------------------------------------------------------------
    def _checkpoint(self, step: int, summary: dict) -> None:
        # Everything else is the same on every process; the random streams are not.
        rng = gather_object([checkpoint.rng_state()])
        weights, optimizer_state = self.updater.state()
        self.writer.checkpoint(step, weights, optimizer_state,
                               {"totals": self.totals, "summary": summary,
                                "method": self._method_state()},
                               self.buffer.pairs, rng)

    def _method_state(self) -> dict:
        """What a method measures during a run and needs to go on (JSON), beside the weights,
        optimizer, random streams and D_train: saved with every checkpoint."""
        return {}

    def _load_method_state(self, state: dict) -> None:
        """Take back what `_method_state` saved (resuming)."""

    def _restore(self, chosen: Path | None = None) -> tuple[int, dict]:
        """Load the newest complete checkpoint (or `chosen`); returns the next step and the
        run's summary so far."""
        out = Path(self.args.output_dir)
        found = checkpoint.complete_checkpoints(out)
        if not found:
            raise UserError(f"--resume: no complete checkpoint in {out}/checkpoints")
        if chosen is not None:
            matching = [f for f in found if f.resolve() == chosen.resolve()]
            if not matching:
                raise UserError(f"resume_from_checkpoint {chosen}: not a complete checkpoint "
                                f"of {out} (those are {', '.join(f.name for f in found)})")
            found = matching
        saved = checkpoint.load(found[-1])
        processes = self.accelerator.num_processes
        if len(saved["rng"]) != processes:
            raise UserError(f"--resume: checkpoint {found[-1]} was written by "
                            f"{len(saved['rng'])} process(es), this run has {processes}; "
                            f"resume with as many (accelerate launch --num_processes "
                            f"{len(saved['rng'])}), so that each continues its random stream")
        if set(self.updater.trainable()) != set(saved["trainable"]):
            raise UserError(f"--resume: checkpoint {found[-1]} holds other parameters than "
                            f"this model trains (another model or LoRA setting?)")
        self.updater.load_state(saved["trainable"], saved["optimizer"])
        checkpoint.set_rng_state(saved["rng"][self.accelerator.process_index])
        state = saved["state"]
        self.buffer.pairs = saved["pairs"]
        self.totals = state["totals"]
        self._load_method_state(state.get("method", {}))  # checkpoints before it: nothing
        self.metrics = self.writer.rewind(state)  # only the main process plots them
        if self.accelerator.is_main_process:
            log.info("resuming after step %d from %s", state["step"], found[-1])
        return state["step"] + 1, state["summary"]
