"""Run configuration: one dataclass per method on a shared base, as TRL has GRPOConfig,
RLOOConfig, ...: `TrainConfig` holds what every method shares (and configures sft, dpo and
rloo, which have no settings of their own); `PLEConfig`, `RAFTConfig` and `PPOConfig` add
their method's. Loaded from YAML and overridden by command-line flags (ple.cli generates the
flags from these dataclasses with transformers' HfArgumentParser).

Every field documents what it is, its default and, where the paper gives one, the paper's value.
Validation happens in __post_init__, before any model or data is loaded, so a bad value costs
nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.util
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import TrainingArguments

from ple import tasks
from ple.errors import UserError
from ple.methods import METHODS, configured_by, having

RANK_LOSSES = ("linear", "hinge", "logistic")
TAU_SCALES = ("absolute", "spread")
ABLATIONS = ("no_rank", "no_wsft")
GENERATION_BACKENDS = ("transformers", "vllm")
GENERATION_DTYPES = ("auto", "bfloat16", "float32")
# model_init_kwargs' dtype names, as TRL's create_model_from_path takes them.
MODEL_DTYPES = ("auto", "bfloat16", "float16", "float32")
# transformers.Trainer's report_to integrations whose package has the integration's name.
TRACKERS = ("tensorboard", "wandb", "trackio", "comet_ml", "mlflow", "neptune", "clearml",
            "dvclive", "swanlab", "codecarbon", "dagshub")


def _doc(text: str) -> dict:
    return {"help": text}


METHOD_DOC = _doc("Training method, with the config class that holds its settings "
                  "(ple.methods): " + ", ".join(f"{name} ({m.config.partition(':')[2]})"
                                                for name, m in METHODS.items())
                  + ". Default ple.")


@dataclass
class TrainConfig(TrainingArguments):
    """What every method shares; configures sft, dpo and rloo, which TRL trains and which have
    no settings of their own. A transformers.TrainingArguments, as TRL's configs are: every
    TrainingArguments field works and means what it means there (lr_scheduler_type,
    warmup_steps, logging_steps, save_total_limit, report_to, push_to_hub, ...); the fields
    below are ple's own, or TrainingArguments' with another default. Field docs double as
    `ple train --help`."""

    # --- what to train -------------------------------------------------------------
    method: str | None = field(default=None, metadata=METHOD_DOC)
    task: str = field(
        default="imdb",
        metadata=_doc("Task: hh (dialogue), imdb (positive review continuation), tldr "
                      "(summarisation). Default imdb."),
    )
    model: str = field(
        default="default",
        metadata=_doc("Policy: hub id, local directory, .gguf file, `default` "
                      "(SmolLM2-135M-Instruct, offline) or `tiny` (random, for tests)."),
    )
    model_init_kwargs: dict | str | None = field(
        default=None,
        metadata=_doc("Keyword arguments for from_pretrained when the policy is loaded from a "
                      "name (not a model given in Python), as TRL's GRPOConfig field of that "
                      "name: e.g. {dtype: bfloat16, attn_implementation: sdpa} in YAML, JSON "
                      "on the command line. dtype is auto, bfloat16, float16 or float32; "
                      "trust_remote_code is refused (ple never runs a model's own code). "
                      "Default none: dtype float32 (TRL's default), except for LoRA on a "
                      "CUDA GPU with bf16 (and bf16 true, no DeepSpeed), where the frozen "
                      "base loads in bfloat16 (half the memory; the adapter stays float32)."),
    )
    reward: str | None = field(
        default=None,
        metadata=_doc("Reward: `vader`, a sequence-classification model (hub id or local dir), "
                      "a reward ple trains once on first use and caches (`imdb-sentiment`: "
                      "the paper's IMDb classifier; `hh-preference`: HH harmless + helpful "
                      "pairs), or `module:function`. Default: the task's offline reward "
                      "(vader for imdb, hh-preference for hh; tldr has none offline)."),
    )
    reward_label: int = field(
        default=1,
        metadata=_doc("For a classifier reward with several labels: which label's logit is "
                      "the reward. Default 1 (the positive class, as the paper does for IMDb)."),
    )
    reward_weights: list[float] | None = field(
        default=None,
        metadata=_doc("From Python: one weight per reward of a trainer's reward_funcs, which "
                      "are summed with them, as GRPOConfig's field of that name. Default: "
                      "all 1."),
    )
    data: str | None = field(
        default=None,
        metadata=_doc("Queries: a .jsonl/.jsonl.gz/.json/.parquet file or a hub dataset name. "
                      "Default: the task's built-in query set (its train part)."),
    )
    chat_template: bool | None = field(
        default=None,
        metadata=_doc("Format prompts with the tokenizer's chat template. Default: yes when "
                      "the tokenizer has one."),
    )

    # --- the training loop ---------------------------------------------------------
    batch_size: int = field(
        default=8, metadata=_doc("Queries per step, |B_query|. Default 8.")
    )
    sft_data: str | None = field(
        default=None,
        metadata=_doc("Supervised data for the SFT warm-up of Algorithm 1 line 2 (Eq. 1). "
                      "Default: no warm-up."),
    )
    sft_steps: int = field(
        default=0, metadata=_doc("Optimizer steps of SFT warm-up on sft_data. Default 0.")
    )

    # --- generation ----------------------------------------------------------------
    max_prompt_tokens: int = field(
        default=256,
        metadata=_doc("Queries whose prompt is longer are dropped and counted. Default and "
                      "paper: 256."),
    )
    max_new_tokens: int = field(
        default=48,
        metadata=_doc("Longest response sampled. Paper: 1024 (on NPUs). Default 48, for CPUs."),
    )
    temperature: float = field(default=1.0, metadata=_doc("Sampling temperature. Default 1.0."))
    top_p: float = field(default=1.0, metadata=_doc("Nucleus sampling mass. Default 1.0."))
    top_k: int = field(default=0, metadata=_doc("Top-k sampling; 0 disables. Default 0."))
    generation_backend: str = field(
        default="transformers",
        metadata=_doc("What samples the responses of a training step: `transformers` "
                      "(model.generate) or `vllm` (a CUDA GPU and `pip install vllm`: vLLM "
                      "holds the base model and is handed the LoRA adapter every step; "
                      "methods ple, raft and ppo, with LoRA, on a hub id, local directory or "
                      "`default`). Held-out evaluation samples with transformers either way. "
                      "Not covered by the tests, which run without a GPU. Default transformers."),
    )
    generation_dtype: str = field(
        default="auto",
        metadata=_doc("Weights that sample with transformers, in training and held-out "
                      "evaluation: `bfloat16`, a copy of the policy in bf16 with its LoRA "
                      "merged, refreshed before each sampling (about 2x the tokens per second "
                      "of float32 on a CPU with AVX512-BF16 or AMX, BENCHMARKS.md; the copy "
                      "costs half the model's float32 size in memory); `float32`, the policy "
                      "itself; `auto`, bfloat16 where the device computes it natively, else "
                      "float32 (and float32 under DeepSpeed, whose weights are sharded). The "
                      "losses' log-probs always come from the policy itself; only the "
                      "sampling distribution is the bf16 copy's. config.yaml records what "
                      "`auto` chose. The paper does not say. Default auto."),
    )

    beta: float | None = field(
        default=None,
        metadata=_doc("KL weight toward the reference (the model with its adapter disabled) "
                      "of the TRL methods: dpo's beta (TRL's default 0.1) and rloo's beta "
                      "(TRL's default 0.05); the strength a reward-KL frontier sweeps. Other "
                      "methods have their own (PLE kl_coef, PPO ppo_kl_coef). Default: TRL's."),
    )

    # --- parameters trained --------------------------------------------------------
    use_lora: bool = field(
        default=True, metadata=_doc("Train a LoRA adapter (lora_r, lora_alpha, lora_dropout "
                                    "on all linear modules); false trains every weight. From "
                                    "Python, a trainer's peft_config decides, and config.yaml "
                                    "records what it did. Default and paper: LoRA.")
    )
    lora_r: int = field(default=8, metadata=_doc("LoRA rank. Default and paper: 8."))
    lora_alpha: int = field(default=16, metadata=_doc("LoRA alpha. Default and paper: 16."))
    lora_dropout: float = field(default=0.0, metadata=_doc("LoRA dropout. Default 0."))

    # --- evaluation and tracking while training ------------------------------------
    eval_queries: int = field(
        default=0,
        metadata=_doc("Held-out queries (the task's built-in held-out part) on which the "
                      "mean reward of plain responses, their perplexity under the frozen "
                      "base model and distinct-2 are measured before and after training. "
                      "0 disables. Default 0 (the demo uses 128)."),
    )

    # --- TrainingArguments' fields, with ple's defaults ----------------------------
    output_dir: str | None = field(default="runs/ple", metadata=_doc("Where outputs go."))
    max_steps: int = field(
        default=30,
        metadata=_doc("Training steps I (Algorithm 1): each samples for batch_size queries and "
                      "makes one optimizer step (Trainer's global step). Default 30."),
    )
    seed: int = field(default=0, metadata=_doc("Random seed for data order, sampling, init. "
                                               "Default 0."))
    save_steps: float = field(
        default=10,
        metadata=_doc("Write a checkpoint (OUTPUT_DIR/checkpoint-N, renamed into place only "
                      "when complete, so a crash leaves no half-written one) every N steps "
                      "and after the last one; `ple train --resume` continues from the "
                      "newest. Default 10."),
    )
    save_total_limit: int | None = field(
        default=2,
        metadata=_doc("Checkpoints kept, the newest (as Trainer's). Default 2."),
    )
    logging_steps: float = field(
        default=1,
        metadata=_doc("Log to the trackers (report_to) every N steps, the metrics averaged "
                      "over them, as Trainer does; metrics.jsonl gets every step either "
                      "way. Default 1."),
    )
    per_device_train_batch_size: int = field(
        default=8,
        metadata=_doc("PPO: responses in one forward pass of its rollout statistics, and "
                      "with gradient_accumulation_steps the size of its mini-batches. PLE and "
                      "RAFT do not read it: a step's pairs (examples) are each process's "
                      "share, in gradient_accumulation_steps passes; TRL's methods (sft, dpo, "
                      "rloo) take batch_size as theirs. Default 8."),
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata=_doc("Forward and backward passes an optimizer step adds up: PLE and RAFT "
                      "split each process's share of a step's pairs into this many, so they "
                      "need not fit in memory at once. Losses are averaged over all the "
                      "step's pairs either way (as Eqs. 3-4 over a mini-batch). The paper "
                      "gives none. Default 1."),
    )
    push_to_hub: bool = field(
        default=False,
        metadata=_doc("After training, upload the trained model as save_model writes it "
                      "(adapter or model, tokenizer, model card naming the base model by its "
                      "Hub id) with config.yaml, metrics.jsonl, summary.json and the plots to "
                      "the Hub repository hub_model_id (default: output_dir's name), once; "
                      "checkpoints are not uploaded (the token: `hf auth login` or HF_TOKEN). "
                      "Default false."),
    )
    learning_rate: float = field(
        default=3e-4,
        metadata=_doc("AdamW learning rate. The paper gives none for PLE. Default 3e-4."),
    )
    lr_scheduler_type: str = field(
        default="constant",
        metadata=_doc("Learning-rate schedule, as Trainer's (linear, cosine, "
                      "constant_with_warmup, ...; warmup_steps, below 1 a share of the steps). Default "
                      "constant, the schedule every measurement in docs/results ran with "
                      "(Trainer's own default is linear)."),
    )
    optim: str = field(
        default="adamw_torch",
        metadata=_doc("Optimizer, as Trainer's. Default adamw_torch (torch's AdamW)."),
    )
    weight_decay: float = field(
        default=0.01,
        metadata=_doc("AdamW weight decay, the same for every method (ple's own and TRL's). "
                      "The paper gives none. Default 0.01 (torch's AdamW default; Trainer's "
                      "is 0)."),
    )
    bf16: bool | None = field(
        default=None,
        metadata=_doc("bf16 mixed precision (autocast; trained weights, gradients and "
                      "optimizer state stay float32; with LoRA the frozen base loads in "
                      "bfloat16 unless model_init_kwargs names a dtype). Default: on for a "
                      "CUDA GPU that computes bf16, else off (a CPU samples in bf16 through "
                      "generation_dtype instead)."),
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata=_doc("Recompute each layer's activations in the backward pass instead of "
                      "keeping them from the forward pass: less memory for a longer train "
                      "phase (BENCHMARKS.md measures both: a default-model PLE step at the "
                      "demo's settings peaks near 3 GB with it, near 5 GB without). Off during "
                      "generation. The older name gradient_checkpointing is read too. The "
                      "paper does not say. Default true, as TRL's trainers."),
    )
    eval_steps: float | None = field(
        default=None,
        metadata=_doc("Also evaluate as eval_queries does every N steps during training "
                      "(eval_strategy steps), logging eval_n, eval_reward_mean, "
                      "eval_reward_se, eval_kl_mean, eval_base_perplexity, eval_distinct_1 "
                      "and eval_distinct_2 in that step's metrics.jsonl row, so reward "
                      "hacking shows early. Needs eval_queries. Default: only before and "
                      "after training."),
    )
    report_to: None | str | list[str] = field(
        default="none",
        metadata=_doc("Experiment trackers that get the metrics every logging_steps, as "
                      "Trainer's report_to: none, or one or more of tensorboard, wandb, "
                      "trackio, comet_ml, mlflow, ... (each needs its package); TensorBoard "
                      "writes under OUTPUT_DIR/runs. metrics.jsonl and samples.jsonl are "
                      "written either way. Default none."),
    )

    def __post_init__(self):
        # As TrainingArguments takes its dict fields: a flag gives JSON, Python a dict (or
        # torch dtypes, recorded by name so that config.yaml can hold them).
        self.model_init_kwargs = _init_kwargs(self.model_init_kwargs)
        if self.bf16 is None:
            self.bf16 = _bf16_gpu()
        if not _cuda():
            # Without a GPU, accelerate runs several processes only when told it is on CPU;
            # DeepSpeed finds its CPU accelerator itself, and talks over gloo.
            deepspeed = launched_with_deepspeed()
            self.use_cpu = self.use_cpu or not deepspeed
            self.ddp_backend = self.ddp_backend or ("gloo" if deepspeed else None)
        if self.activation_checkpointing is None:
            self.activation_checkpointing = self.gradient_checkpointing is not False
        if self.activation_checkpointing_kwargs is None:
            # Non-reentrant checkpointing needs no gradient at the inputs, which LoRA's
            # frozen embeddings do not have.
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        if self.eval_steps and self.eval_strategy == "no":
            self.eval_strategy = "steps"
        self.validate()
        self.report_to = trackers(self) or "none"
        try:
            super().__post_init__()
        except ValueError as e:  # TrainingArguments' own rules, in its words
            raise UserError(f"config: {str(e).strip().splitlines()[0]}") from None

    def validate(self) -> None:
        """Range checks; each failure names the key. Subclasses add their method's."""
        need = _checker(self)
        need(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
        configures = METHODS[self.method].config_class()
        need(configures is type(self), "method",
             f"is configured by {configures.__name__}, not {type(self).__name__} (which "
             f"configures {', '.join(configured_by(type(self)))})")
        need(self.task in tasks.TASKS, "task", f"must be one of {', '.join(tasks.TASKS)}")
        for key in ("batch_size", "max_steps", "save_steps", "per_device_train_batch_size",
                    "gradient_accumulation_steps", "max_prompt_tokens", "max_new_tokens",
                    "lora_r", "lora_alpha"):
            need(getattr(self, key) >= 1, key, "must be >= 1")
        for key in ("sft_steps", "eval_queries", "top_k"):
            need(getattr(self, key) >= 0, key, "must be >= 0")
        need(self.eval_steps is None or self.eval_steps >= 0, "eval_steps", "must be >= 0")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(self.max_grad_norm > 0, "max_grad_norm", "must be > 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.temperature > 0, "temperature", "must be > 0")
        need(0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]")
        need(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        need(self.generation_backend in GENERATION_BACKENDS, "generation_backend",
             f"must be one of {', '.join(GENERATION_BACKENDS)}")
        need(self.generation_dtype in GENERATION_DTYPES, "generation_dtype",
             f"must be one of {', '.join(GENERATION_DTYPES)}")
        if self.generation_backend == "vllm":
            need(importlib.util.find_spec("vllm") is not None, "generation_backend",
                 "vLLM is not installed (pip install vllm; it needs a CUDA GPU)")
            need(METHODS[self.method].vllm, "generation_backend",
                 f"vllm samples for methods {having('vllm')}, not {self.method}")
            need(self.use_lora, "generation_backend", "vllm needs use_lora: true (it is "
                 "handed the adapter, not full weights)")
            need(self.model != "tiny" and not self.model.endswith(".gguf"),
                 "generation_backend",
                 f"vllm loads a hub id, a local directory or `default`, not {self.model}")
        for tracker in trackers(self):
            need(tracker in TRACKERS, "report_to",
                 f"must be none or a comma-separated list of {', '.join(TRACKERS)}")
            need(importlib.util.find_spec(tracker) is not None, "report_to",
                 f"{tracker} is not installed (pip install {tracker})")
        need(self.sft_steps == 0 or self.sft_data is not None, "sft_steps",
             "needs sft_data (the supervised data to warm up on)")
        need(self.beta is None or METHODS[self.method].beta, "beta",
             f"is the KL weight of {having('beta')}; method {self.method} has its own")
        need(self.beta is None or self.beta > 0, "beta", "must be > 0")
        kwargs = self.model_init_kwargs or {}
        need(isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs),
             "model_init_kwargs", "must be a mapping of from_pretrained's keyword arguments "
             "(YAML mapping, or a JSON object on the command line)")
        need(kwargs.get("dtype") in (None, *MODEL_DTYPES), "model_init_kwargs",
             f"dtype must be one of {', '.join(MODEL_DTYPES)}")
        need("torch_dtype" not in kwargs, "model_init_kwargs",
             "torch_dtype is called dtype (transformers 5)")
        need("trust_remote_code" not in kwargs, "model_init_kwargs",
             "ple never trusts remote code (no trust_remote_code)")
        need(isinstance(kwargs.get("attn_implementation", ""), str), "model_init_kwargs",
             "attn_implementation must be a string (eager, sdpa, flash_attention_2, ...)")
        need(self.hub_model_id is None or _repo_id_ok(self.hub_model_id), "hub_model_id",
             "must be a Hub repository id: `name` or `namespace/name`")
        # Under `accelerate launch --num_processes N` (torch.distributed's WORLD_SIZE = N):
        # checked before TrainingArguments joins the processes (docs/scaling.md).
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        spreads = METHODS[self.method].distributed
        need(processes == 1 or spreads, "method", f"runs on one process, not {processes}; "
             f"{having('distributed')} run on several (docs/scaling.md)")
        need(not launched_with_deepspeed() or spreads, "method", f"runs without DeepSpeed; "
             f"{having('distributed')} run under it (docs/scaling.md)")
        need(self.batch_size >= processes, "batch_size",
             f"each of the {processes} processes needs at least one query a step")

    def to_dict(self) -> dict:
        """The settings as config.yaml records them: ple's own fields and every
        TrainingArguments field given another value than its default."""
        defaults = _training_arguments_defaults()
        return {k: v for k, v in super().to_dict().items()
                if k not in TA_FIELDS or k in TrainConfig.__annotations__
                or (v != defaults.get(k) and k not in DERIVED)}


@dataclass
class PLEConfig(TrainConfig):
    """PLE (Algorithm 1): the shared settings and the method's own."""

    method: str = field(default="ple", metadata=METHOD_DOC)

    # --- PLE -----------------------------------------------------------------------------
    principle: str | None = field(
        default=None,
        metadata=_doc("Principle prompt p prepended to the query for y'. Default: the "
                      "paper's principle for the task (Section 4.1, Appendix A.3)."),
    )
    principle_file: str | None = field(
        default=None,
        metadata=_doc("Read the principle prompt from this text file instead."),
    )
    principle_name: str | None = field(
        default=None,
        metadata=_doc("One of the principles ple ships for the task, by name, instead of "
                      "principle or principle_file: `paper` (every task: the paper's) and, "
                      "for imdb, `fan-voice` and `one-shot` (not in the paper: written to "
                      "teach a small model more than the paper's does; texts in ple.tasks; "
                      "benchmarks/principle_probe.py compares them by sampling). Default: "
                      "the paper's."),
    )
    tau0: float = field(
        default=0.2, metadata=_doc(
            "Initial threshold tau_0 (Eq. 7), in the reward's own units (or, with "
            "tau_scale spread, in units of the spread of s' - s): the wider a "
            "reward's spread, the more pairs clear it into the rank branch. On the IMDb "
            "classifier (scores' sd about 1.07) at lr 3e-4, 0.2 sent 5 of the first 8 "
            "pairs there and 1.0 3; on validation (one seed) 1.0 kept PLE within the "
            "guards and 0.2 did not (docs/results/imdb/README.md). Default and paper: 0.2.")
    )
    tau_scale: str = field(
        default="absolute",
        metadata=_doc("The unit of tau0: `absolute` (the paper: the reward's own units) or "
                      "`spread` (not in the paper: tau0 times the standard deviation of "
                      "s' - s over the first step's pairs, so that the threshold sits where "
                      "the task's gaps are; measured once, kept by checkpoints, logged as "
                      "tau_spread in metrics.jsonl, where tau is the threshold used). "
                      "Default absolute."),
    )
    alpha: float = field(
        default=0.9, metadata=_doc("Threshold decay alpha in (0, 1) (Eq. 7). Default and "
                                   "paper: 0.9.")
    )
    rank_loss: str = field(
        default="linear",
        metadata=_doc("Form of Eq. 3: `linear` (the paper: minus the gap of length-normalised "
                      "log-probs), `hinge` (RRHF: max(0, worse - better)) or `logistic` "
                      "(DPO's: -log sigmoid(rank_beta * the gap of summed log-probs, each "
                      "minus the frozen base model's)). Default linear."),
    )
    rank_beta: float = field(
        default=0.1,
        metadata=_doc("beta of rank_loss logistic: how far the policy may move from the "
                      "base model before a ranked pair stops pulling. Not in the paper. "
                      "Default 0.1, DPO's (TRL's default, ple's dpo)."),
    )
    ablation: str | None = field(
        default=None,
        metadata=_doc("The paper's ablations (Tables 4-5). `no_rank`: without L_rank and "
                      "without the principle prompt; the pair is two plain samples y1, y2 ~ "
                      "pi(.|x), both trained by weighted SFT (Eq. 4-5). `no_wsft`: without "
                      "L_weighted-sft; pairs at or under tau are not trained on. Default: none."),
    )
    sft_anchor: float = field(
        default=1.0,
        metadata=_doc("Coefficient of an extra SFT term (Eq. 1, length-normalised) on the "
                      "better response of every pair, as RRHF adds. Not in the paper (paper: "
                      "0, which disables it). Default 1.0, the setting measured best on IMDb "
                      "(docs/results/imdb-settings.md)."),
    )
    kl_coef: float = field(
        default=0.0,
        metadata=_doc("Coefficient beta of a penalty toward the frozen base model on the plain "
                      "responses y (sampled from the policy: on-policy with replay_window 1; "
                      "y' is sampled under the principle prompt, so it never is): "
                      "Schulman's k3 estimate of "
                      "KL(pi || pi_base) per token, averaged over the response, as GRPO and "
                      "TRL's `beta` add it. Not in the paper (paper: 0, which disables it). "
                      "Default 0."),
    )
    wsft_coef: float = field(
        default=1.0,
        metadata=_doc("Coefficient lambda of L_weighted-sft in Eq. 6. 0 is the paper's "
                      "w/o L_weighted-sft ablation (ablation no_wsft): pairs at or under tau "
                      "are then not trained on at all, not even by sft_anchor or kl_coef. "
                      "Default and paper: 1."),
    )
    wsft_positive_only: bool = field(
        default=False,
        metadata=_doc("Keep only the positive-weight half of Eq. 4: the better response of a "
                      "weighted pair is pushed up, the worse one is not pushed down. Not the "
                      "paper's. Default false, the paper's."),
    )
    wsft_length_norm: bool = field(
        default=False,
        metadata=_doc("Divide Eq. 4's log-probabilities by the response length, as Eq. 3's "
                      "are. Not the paper's: Eq. 4 sums over tokens, so a weighted pair pulls "
                      "about |y| times harder than a ranked one (on IMDb, L_weighted-sft gave "
                      "81 % of the gradient from a third of the pairs; "
                      "docs/results/imdb/diagnostics.md). Default false, the paper's."),
    )
    replay_window: int = field(
        default=1,
        metadata=_doc("Replay the pairs of the last N steps from D_train; 0 replays all of "
                      "D_train every step, as the paper does (Algorithm 1 lines 12-14), at a "
                      "cost that grows with the step (30 steps: 15 times the pairs trained, "
                      "each step's in one optimizer step; a pass holds a process's share over "
                      "gradient_accumulation_steps, so raise that for memory). "
                      "Default 1, the current step's pairs, measured on IMDb "
                      "(docs/results/imdb-settings.md)."),
    )
    purity_margins: list[float] = field(
        default_factory=lambda: [0.05, 0.2, 0.5, 1.0],
        metadata=_doc("The margins e at which level-set purity (Definition 5.1) is "
                      "logged each step: of the pairs trained with s' - s >= e, the share "
                      "whose length-normalised log-prob of y' exceeds that of y "
                      "(metrics.jsonl `purity`, `purity_n`; purity.png). On the command "
                      "line: --purity-margins 0.05 0.2. Default 0.05, 0.2, 0.5, 1.0 for "
                      "rewards in [-1, 1] such as VADER: tau0 (0.2), the tau of about step 14 "
                      "(0.05), and gaps a clear change of sentiment makes (0.5, 1.0); e = 0 "
                      "would count ties, which carry no order."),
    )

    @property
    def principle_text(self) -> str | None:
        if self.principle_name is not None:
            return tasks.TASKS[self.task].principles()[self.principle_name]
        if self.principle_file is None:
            return self.principle
        try:
            return Path(self.principle_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UserError(f"principle_file: cannot read {self.principle_file}: "
                            f"{e.strerror}") from None

    def validate(self) -> None:
        super().validate()
        need = _checker(self)
        need(self.rank_loss in RANK_LOSSES, "rank_loss",
             f"must be one of {', '.join(RANK_LOSSES)}")
        need(self.rank_beta > 0.0, "rank_beta", "must be > 0")
        need(0.0 < self.alpha < 1.0, "alpha", "must be in (0, 1)")
        need(self.tau0 >= 0.0, "tau0", "must be >= 0")
        need(self.tau_scale in TAU_SCALES, "tau_scale", f"must be one of {', '.join(TAU_SCALES)}")
        need(self.tau_scale != "spread" or self.batch_size >= 2, "tau_scale",
             "spread needs batch_size >= 2 (it is measured on the first step's pairs)")
        need(self.wsft_coef >= 0.0, "wsft_coef", "must be >= 0")
        need(self.ablation != "no_wsft" or self.wsft_coef in (0.0, 1.0), "wsft_coef",
             "ablation no_wsft is wsft_coef 0: give one or the other")
        need(self.ablation != "no_rank" or self.wsft_coef > 0, "wsft_coef",
             "must be > 0 under ablation no_rank, which trains only L_weighted-sft")
        need(self.replay_window >= 0, "replay_window",
             "must be >= 0 (0 replays all of D_train)")
        need(self.sft_anchor >= 0.0, "sft_anchor", "must be >= 0")
        need(self.kl_coef >= 0.0, "kl_coef", "must be >= 0")
        need(len(self.purity_margins) >= 1 and min(self.purity_margins) >= 0
             and len(set(self.purity_margins)) == len(self.purity_margins), "purity_margins",
             "must be one or more distinct numbers >= 0")
        need(self.ablation in (None, *ABLATIONS), "ablation",
             f"must be one of {', '.join(ABLATIONS)} (or null)")
        need(self.principle is None or self.principle_file is None, "principle_file",
             "give either principle or principle_file, not both")
        need(self.principle_name is None or (self.principle is None
                                             and self.principle_file is None),
             "principle_name", "give one of principle, principle_file and principle_name")
        names = tasks.TASKS[self.task].principles()
        need(self.principle_name is None or self.principle_name in names, "principle_name",
             f"must be one of {', '.join(names)} for task {self.task}")


@dataclass
class RAFTConfig(TrainConfig):
    """RAFT (Dong et al. 2023): best of k samples by reward, then SFT on it."""

    method: str = field(default="raft", metadata=METHOD_DOC)

    raft_k: int = field(
        default=4,
        metadata=_doc("Responses sampled per query, of which the best by reward "
                      "is kept for SFT. Default and paper (RAFT-4): 4."),
    )

    def validate(self) -> None:
        super().validate()
        _checker(self)(self.raft_k >= 1, "raft_k", "must be >= 1")


@dataclass
class PPOConfig(TrainConfig):
    """PPO (Schulman et al. 2017) for language models as in Ziegler et al. 2019 and TRL's
    PPOTrainer (removed from TRL in 1.x); defaults are TRL's PPOConfig defaults."""

    method: str = field(default="ppo", metadata=METHOD_DOC)

    ppo_epochs: int = field(
        default=4, metadata=_doc("Optimisation epochs over each batch of rollouts. "
                                 "Default 4 (TRL num_ppo_epochs).")
    )
    ppo_clip: float = field(
        default=0.2, metadata=_doc("Clip range of the policy ratio. Default 0.2.")
    )
    ppo_value_clip: float = field(
        default=0.2, metadata=_doc("Clip range of the value update. Default 0.2.")
    )
    ppo_vf_coef: float = field(
        default=0.1, metadata=_doc("Weight of the value loss. Default 0.1.")
    )
    ppo_gamma: float = field(
        default=1.0, metadata=_doc("Discount gamma of GAE. Default 1.0.")
    )
    ppo_lambda: float = field(
        default=0.95, metadata=_doc("Lambda of GAE. Default 0.95.")
    )
    ppo_kl_coef: float = field(
        default=0.05,
        metadata=_doc("Per-token KL penalty against the reference (the model with "
                      "its adapter disabled). Default 0.05."),
    )
    ppo_whiten_rewards: bool = field(
        default=True,
        metadata=_doc("Whiten the scores of a batch (zero mean, unit variance) "
                      "before the KL penalty is added. Default true."),
    )

    def validate(self) -> None:
        super().validate()
        need = _checker(self)
        need(self.ppo_epochs >= 1, "ppo_epochs", "must be >= 1")
        for key in ("ppo_clip", "ppo_value_clip", "ppo_vf_coef", "ppo_kl_coef"):
            need(getattr(self, key) >= 0.0, key, "must be >= 0")
        for key in ("ppo_gamma", "ppo_lambda"):
            need(0.0 <= getattr(self, key) <= 1.0, key, "must be in [0, 1]")


CONFIGS = (TrainConfig, PLEConfig, RAFTConfig, PPOConfig)
# Every setting of every method, by name (a name means the same in every class).
FIELDS = {f.name: f for cls in CONFIGS for f in dataclasses.fields(cls)}
_HINTS = {name: hint for cls in CONFIGS for name, hint in typing.get_type_hints(cls).items()
          if name in FIELDS}


def _init_kwargs(value):
    """model_init_kwargs as the config keeps it: a dict (a JSON string parsed; a torch dtype
    by its name), or what validate then refuses."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError(f"config key `model_init_kwargs` = {value!r}: not a JSON object "
                            f"(e.g. '{{\"dtype\": \"bfloat16\"}}')") from None
    if isinstance(value, dict) and type(value.get("dtype")).__module__ == "torch":
        value = {**value, "dtype": str(value["dtype"]).removeprefix("torch.")}
    return value


def _repo_id_ok(repo_id) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except (HFValidationError, TypeError):
        return False
    return True


def _checker(cfg: TrainConfig):
    def need(ok: bool, key: str, rule: str):
        if not ok:
            raise UserError(f"config key `{key}` = {getattr(cfg, key)!r}: {rule}")
    return need


KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
              dict: "a mapping", list: "a list"}


def field_types(name: str) -> tuple[tuple[type, ...], bool]:
    """The types a config field takes (an enum counts as its str values) and whether it may
    be None."""
    hint = _HINTS[name]
    args = typing.get_args(hint) if (isinstance(hint, types.UnionType)
                                      or typing.get_origin(hint) is typing.Union) else (hint,)
    kinds = tuple(str if isinstance(a, type) and issubclass(a, enum.Enum)
                  else typing.get_origin(a) or a for a in args if a is not type(None))
    return kinds, type(None) in args


def coerce(name: str, value, where: str):
    """Check one value against the field's type; ints are accepted where floats are."""
    kinds, optional = field_types(name)
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: `{name}` must not be empty")
    if _HINTS[name] == list[float]:
        if not isinstance(value, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise UserError(f"{where}: `{name}` must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    wanted = " or ".join(KIND_WORDS.get(k, k.__name__) for k in kinds)
    if isinstance(value, bool) != (bool in kinds) and not (str in kinds and dict in kinds):
        raise UserError(f"{where}: `{name}` must be {wanted}, got {value!r}")
    if float in kinds and int not in kinds and isinstance(value, int):
        return float(value)
    if not isinstance(value, kinds):
        raise UserError(f"{where}: `{name}` must be {wanted}, got {value!r}")
    return value


def yaml_mapping(path: str) -> yaml.MappingNode | None:
    """The root node of a YAML config file (None when it is empty), with line numbers for
    messages; errors name the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"config file {path}: {e.strerror}") from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if root is not None and not isinstance(root, yaml.MappingNode):
        raise UserError(f"{path}: a config file must be a mapping of key: value")
    return root


def read_yaml(path: str) -> tuple[dict, dict[str, str]]:
    """The settings of a YAML config, type-checked, and the "file:line" of each; errors
    name the file and line."""
    root = yaml_mapping(path)
    values, lines = {}, {}
    for key_node, value_node in (root.value if root is not None else []):
        key, where = key_node.value, f"{path}:{key_node.start_mark.line + 1}"
        if key not in FIELDS:
            raise UserError(f"{where}: unknown config key `{key}`")
        values[key] = coerce(key, yaml.safe_load(yaml.serialize(value_node)), where)
        lines[key] = where
    return values, lines


def check_method_keys(values: dict, lines: dict[str, str]) -> type[TrainConfig]:
    """The config class of the method `values` name (default ple), after refusing a setting
    of another method; the message names the line of the YAML key (or the flag)."""
    method = values.get("method", "ple")
    # An unknown method gets TrainConfig, whose validation then refuses it in one line.
    cls = METHODS[method].config_class() if method in METHODS else TrainConfig
    own = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in own:
            where = f"{lines[key]}: " if key in lines else ""
            raise UserError(f"{where}config key `{key}` is not a setting of method {method}")
    return cls


def from_namespace(cls, namespace):
    """An instance of dataclass `cls` from the parsed flags of its fields (HfArgumentParser's
    flags; an unknown flag has already been refused by argparse, in its own words)."""
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})


def trackers(cfg: TrainConfig) -> list[str]:
    """The trackers `report_to` names (none: an empty list); a comma-separated string as
    the flag gives it, or TrainingArguments' list."""
    names = cfg.report_to.split(",") if isinstance(cfg.report_to, str) else cfg.report_to or []
    return [t.strip() for t in names if t.strip() not in ("", "none")]


TA_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}
# TrainingArguments fields that __post_init__ derives from others: not settings of their own.
# Nor are hub_token (which to_dict hides) and the settings Trainer fills in.
DERIVED = {"gradient_checkpointing", "gradient_checkpointing_kwargs", "eval_strategy", "do_eval",
           "logging_dir", "disable_tqdm", "hub_token", "include_for_metrics",
           "accelerator_config", "debug", "use_cpu", "ddp_backend"}


@functools.cache
def _training_arguments_defaults() -> dict:
    """TrainingArguments' declared defaults (an instance would reset accelerate's state)."""
    return {f.name: f.default.value if isinstance(f.default, enum.Enum) else f.default
            for f in dataclasses.fields(TrainingArguments)
            if f.default is not dataclasses.MISSING}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16_gpu() -> bool:
    import torch

    return _cuda() and torch.cuda.is_bf16_supported()


def launched_with_deepspeed() -> bool:
    """True under `accelerate launch` with a DeepSpeed config (accelerate's own signal)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def load_config(path: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """YAML (if any), then overrides (flags win), as the method's config class, validated."""
    values, lines = read_yaml(path) if path else ({}, {})
    for key, value in (overrides or {}).items():
        if key not in FIELDS:
            raise UserError(f"unknown config key `{key}`")
        values[key] = coerce(key, value, "command line")
        lines.pop(key, None)
    return check_method_keys(values, lines)(**values)
