"""The loop every online method shares: queries -> samples -> rewards -> update, with
metrics.jsonl, samples.jsonl, crash-safe checkpoints, evaluation and the saved adapter."""

from __future__ import annotations

import copy
import itertools
import json
import random
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ple import checkpoint, losses
from ple.buffer import ReplayBuffer
from ple.config import PLEConfig
from ple.errors import UserError
from ple.evaluation.heldout import evaluate_plain
from ple.models import add_lora
from ple.plot import plot_reward_curves
from ple.rewards import RewardModel
from ple.rollout import Prompter, decode, sample
from ple.sequences import pack, response_token_logprobs
from ple.tasks import TASKS

RUN_FILES = ("config.yaml", "metrics.jsonl", "samples.jsonl", "summary.json",
             "reward_curves.png", "loss_curve.png", "purity.png", "value_head.safetensors")


def make_prompter(args: PLEConfig, tokenizer) -> Prompter:
    """Prompts with the chat template when the tokenizer has one (or as configured)."""
    task = TASKS[args.task]
    use_chat = args.chat_template
    if use_chat is None:
        use_chat = tokenizer.chat_template is not None
    elif use_chat and tokenizer.chat_template is None:
        raise UserError("config key `chat_template` = true: the tokenizer has no chat template")
    return Prompter(tokenizer, task, args.principle_text or task.principle, use_chat)


def length_filter(prompter: Prompter, queries: list[str], limit: int,
                  what: str) -> tuple[list[str], int]:
    """Drop queries whose plain prompt is over `limit` tokens (the paper's rule, 256), and
    count them; no query is ever truncated."""
    kept = [q for q in queries if len(prompter.ids(q)) <= limit]
    if queries and not kept:
        raise UserError(f"{what}: all {len(queries)} queries are longer than "
                        f"max_prompt_tokens = {limit} tokens")
    return kept, len(queries) - len(kept)


def eval_row(evaluation: dict) -> dict:
    """The numbers of an `evaluate_plain` result for a metrics.jsonl row, named eval_*
    (eval_reward_mean, ...); the samples stay out."""
    return {f"eval_{k}": v for k, v in evaluation.items() if k != "samples"}


class OnlineTrainer:
    """The harness every online method shares: sample, score, update, log, checkpoint.

    A method subclasses it and implements `_step`, which returns the metrics row of a step.

    Args:
        args: the run configuration.
        model: a causal LM; LoRA is added here when `args.use_lora`.
        tokenizer: its tokenizer (left padding is set here).
        reward: the reward model R(x, y).
        queries: the training queries (task text, see ple.tasks).
        eval_queries: held-out queries measured before and after training.
        sft_pairs: (query, response) pairs for the SFT warm-up (Algorithm 1 line 2).
    """

    def __init__(self, args: PLEConfig, model, tokenizer, reward: RewardModel,
                 queries: list[str], eval_queries: list[str] | None = None,
                 sft_pairs: list[tuple[str, str]] | None = None):
        self.args = args
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        self.reward = reward
        self.prompter = make_prompter(args, tokenizer)
        self.queries, self.dropped = length_filter(self.prompter, queries,
                                                   args.max_prompt_tokens, "data")
        self.eval_queries = length_filter(self.prompter, eval_queries or [],
                                          args.max_prompt_tokens, "eval")[0]
        self.sft_pairs = sft_pairs or []
        context = getattr(model.config, "max_position_embeddings", None)
        longest = max(len(self.prompter.ids(q, guided=True)) for q in self.queries)
        if context and longest + args.max_new_tokens > context:
            raise UserError(f"principle: the longest principle-guided prompt is {longest} "
                            f"tokens; with max_new_tokens = {args.max_new_tokens} it exceeds "
                            f"the model's context of {context} tokens")

        set_seed(args.seed)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        # Full fine-tuning needs a frozen copy to measure drift; LoRA just disables itself.
        self.frozen_base = None
        if args.use_lora:
            model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout)
        elif self.eval_queries:
            self.frozen_base = copy.deepcopy(model).eval().requires_grad_(False)
        self.extra_modules = self._extra_modules(model)
        params = [p for p in model.parameters() if p.requires_grad]
        params += [p for m in self.extra_modules.values() for p in m.parameters()]
        optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.vllm = None
        if args.generation_backend == "vllm":
            from ple.vllm_backend import VLLMSampler

            self.vllm = VLLMSampler(args, self.accelerator.unwrap_model(self.model), tokenizer)
        self.buffer = ReplayBuffer(args.replay_window)
        self.metrics: list[dict] = []
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
    def _sample(self, prompts: list[list[int]]) -> tuple[list, list]:
        """Response token ids and texts for prompts, in ONE batched generate call."""
        a, model = self.args, self.accelerator.unwrap_model(self.model)
        if self.vllm is not None:
            responses = self.vllm.sample(model, prompts)
        else:
            responses = sample(model, self.tokenizer, prompts, a.max_new_tokens,
                               a.temperature, a.top_p, a.top_k)
        return responses, decode(self.tokenizer, responses)

    def _count_generated(self, responses: list[list[int]]) -> None:
        """The generation budget; evaluation samples are not part of it."""
        self.totals["generated_responses"] += len(responses)
        self.totals["generated_tokens"] += sum(len(r) for r in responses)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)
        self.accelerator.clip_grad_norm_(
            itertools.chain(self.model.parameters(),
                            *(m.parameters() for m in self.extra_modules.values())),
            self.args.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def _sft_update(self, prompts: list[list[int]], responses: list[list[int]]) -> float:
        """One optimizer step of SFT (Eq. 1, averaged over the examples); returns the loss."""
        self.model.train()
        batch = pack(prompts, responses, self.tokenizer.pad_token_id)
        token_logps = response_token_logprobs(self.model, batch)
        mask = batch["response_mask"].to(token_logps.device)
        loss = losses.sft_loss(losses.sequence_logprob(token_logps, mask)).mean()
        self._optimizer_step(loss)
        return float(loss.detach())

    def _sft_warmup(self) -> None:
        """Algorithm 1 line 2: initialise the policy with SFT (Eq. 1) on supervised pairs."""
        rng = random.Random(self.args.seed)
        eos = [self.tokenizer.eos_token_id]
        for _ in tqdm(range(self.args.sft_steps), desc="SFT warm-up"):
            chosen = rng.sample(self.sft_pairs, min(self.args.train_batch_size,
                                                    len(self.sft_pairs)))
            self._sft_update([self.prompter.ids(q) for q, _ in chosen],
                             [self.tokenizer(r, add_special_tokens=False)["input_ids"] + eos
                              for _, r in chosen])

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Plain responses to the held-out queries (see evaluate_plain)."""
        return evaluate_plain(self.accelerator.unwrap_model(self.model), self.tokenizer,
                              self.prompter, self.reward, self.eval_queries, self.args,
                              self.frozen_base)

    # --- the loop --------------------------------------------------------------------------
    def train(self, resume: bool = False) -> dict:
        """Run Algorithm 1; with `resume`, continue from the newest complete checkpoint."""
        a = self.args
        out = Path(a.output_dir)
        if resume:
            start, summary = self._restore(out)
        else:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(yaml.safe_dump(a.to_dict(), sort_keys=False))
            for name in ("metrics.jsonl", "samples.jsonl"):
                (out / name).write_text("")
            start = 1
            summary = {"queries": len(self.queries), "queries_dropped_too_long": self.dropped}
            if self.dropped:
                print(f"ple: dropped {self.dropped} of {self.dropped + len(self.queries)} "
                      f"queries longer than max_prompt_tokens = {a.max_prompt_tokens}")
            if self.sft_pairs and a.sft_steps:
                self._sft_warmup()
            if self.eval_queries:
                summary["eval_before"] = self.evaluate()
        bar = tqdm(range(start, a.max_steps + 1), desc=a.method.upper(), unit="step",
                   initial=start - 1,
                   total=a.max_steps)
        with open(out / "metrics.jsonl", "a") as metrics_f, \
                open(out / "samples.jsonl", "a") as samples_f:
            for step in bar:
                row = self._step(step, self._queries_for_step(step), samples_f)
                if a.eval_steps and step % a.eval_steps == 0:
                    row.update(eval_row(self.evaluate()))
                metrics_f.write(json.dumps(row) + "\n")
                metrics_f.flush()
                self.metrics.append(row)
                bar.set_postfix(self._progress(row))
                if step % a.save_steps == 0 or step == a.max_steps:
                    self._checkpoint(out, step, summary)
        self._save(out)
        if self.eval_queries:
            summary["eval_after"] = self.evaluate()
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    def _step(self, step: int, queries: list[str], samples_f) -> dict:
        """One step of the method on a mini-batch of queries; writes its samples rows and
        returns its metrics row."""
        raise NotImplementedError

    def _progress(self, row: dict) -> dict:
        return {"r": f"{row['reward_mean']:.2f}"}

    def _extra_modules(self, model) -> dict[str, torch.nn.Module]:
        """Modules a method trains beside the policy (PPO's value head), by name. Their
        parameters join the optimizer, gradient clipping and checkpoints (as `name.param`).
        Called once in __init__, after LoRA is added and before the optimizer is built."""
        return {}

    def _trainable(self) -> dict:
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        for name, module in self.extra_modules.items():
            params.update({f"{name}.{n}": p for n, p in module.named_parameters()})
        return params

    def _checkpoint(self, out: Path, step: int, summary: dict) -> None:
        state = {"step": step, "totals": self.totals, "summary": summary,
                 # Rows written after this checkpoint are cut off again on resume.
                 "metrics_bytes": (out / "metrics.jsonl").stat().st_size,
                 "samples_bytes": (out / "samples.jsonl").stat().st_size}
        checkpoint.save(out, step, self._trainable(), self.optimizer.state_dict(), state,
                        self.buffer.pairs)

    def _restore(self, out: Path) -> tuple[int, dict]:
        found = checkpoint.complete_checkpoints(out)
        if not found:
            raise UserError(f"--resume: no complete checkpoint in {out}/checkpoints")
        saved = checkpoint.load(found[-1])
        params = self._trainable()
        if set(params) != set(saved["trainable"]):
            raise UserError(f"--resume: checkpoint {found[-1]} holds other parameters than "
                            f"this model trains (another model or LoRA setting?)")
        with torch.no_grad():
            for name, tensor in saved["trainable"].items():
                params[name].copy_(tensor)
        self.optimizer.load_state_dict(saved["optimizer"])
        checkpoint.set_rng_state(saved["rng"])
        state = saved["state"]
        self.buffer.pairs = saved["pairs"]
        self.totals = state["totals"]
        for name in ("metrics", "samples"):
            with open(out / f"{name}.jsonl", "r+b") as f:
                f.truncate(state[f"{name}_bytes"])
        self.metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
        print(f"ple: resuming after step {state['step']} from {found[-1]}")
        return state["step"] + 1, state["summary"]

    def _save(self, out: Path) -> None:
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(out / ("adapter" if self.args.use_lora else "model"),
                              safe_serialization=True)
        if not self.args.use_lora:
            self.tokenizer.save_pretrained(out / "model")
        plot_reward_curves(self.metrics, out / "reward_curves.png")
