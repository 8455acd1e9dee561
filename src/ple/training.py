"""Run one configuration: check every input, then load the model and train with the method
it names. What `ple train` and `ple compare` do; from Python, the trainers themselves
(ple.PLETrainer, ...) are the entry point.

Every mistake in what the user gave is refused, in one line, before any weights load and
before anything is written.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ple.config import PLEConfig, TrainConfig, load_config
from ple.errors import UserError
from ple.methods import METHODS
from ple.paths import check_writable_dir
from ple.tasks import (TASKS, builtin_queries, load_preference_pairs, load_queries,
                       load_sft_pairs)

log = logging.getLogger(__name__)


def check_output_dir(path: str, overwrite: bool) -> list[Path]:
    """Refuse a directory that cannot be written or holds another run (without --overwrite).
    Returns the old run's files, which --overwrite replaces. Cheap: run it before any work,
    so a mistyped path does not wait for a tokenizer or a reward to be prepared."""
    from ple.run_writer import RUN_FILES

    out = Path(path)
    check_writable_dir(out, "--output-dir")
    old = [out / name for name in (*RUN_FILES, "adapter", "model", "runs", ".staging")
           if (out / name).exists()] + sorted(out.glob("checkpoint-*"))
    if old and not overwrite:
        raise UserError(f"--output-dir {path} holds another run ({old[0].name}); pass "
                        f"--overwrite to replace it or choose another directory")
    return old


def prepare_output_dir(path: str, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory; with --overwrite, clear the old one."""
    for p in check_output_dir(path, overwrite):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def differing_settings(saved: dict, wanted: dict, ignore: tuple[str, ...]) -> list[str]:
    """The settings, besides `ignore`, in which a run's config.yaml differs from the config
    asked for. config.yaml records the generation_dtype that `auto` chose on the machine that
    trained the run, which is what `auto` asks for."""
    return [k for k, v in wanted.items() if k not in ignore and saved.get(k, v) != v
            and not (k == "generation_dtype" and v == "auto")]


def check_resume(cfg: TrainConfig) -> None:
    """A resumed run trains as the saved one did: `cfg` may differ from OUTPUT_DIR/config.yaml
    only in max_steps (to extend the run)."""
    saved_path = Path(cfg.output_dir) / "config.yaml"
    if not saved_path.is_file():
        raise UserError(f"--resume: {saved_path} does not exist (no run to continue)")
    saved = load_config(str(saved_path))
    changed = differing_settings(saved.to_dict(), cfg.to_dict(), ignore=("max_steps",))
    if type(saved) is not type(cfg) or changed:
        raise UserError(f"--resume: the config differs from the saved run in "
                        f"{', '.join(changed) or 'method'}")


def data_kind(cfg: TrainConfig) -> str:
    """What the method trains from on this task (ple.methods.Method.data): on a task without
    human preference pairs (imdb), a method that learns from pairs samples its own from
    queries."""
    kind = METHODS[cfg.method].data
    return "queries" if kind == "preference_pairs" and \
        not TASKS[cfg.task].has_preference_pairs else kind


def method_data(cfg: TrainConfig, task):
    """What the method trains from: supervised pairs (sft), human preference pairs (dpo on
    hh and tldr), or queries (every online method, and dpo on imdb, which samples its pairs)."""
    kind = data_kind(cfg)
    if kind == "sft_pairs":
        if cfg.data is None:
            raise UserError(f"config key `data`: method {cfg.method} needs supervised data (hh: "
                            f"`chosen`; imdb: `text` and `label`; tldr: `prompt` and `summary`)")
        return load_sft_pairs(task, cfg.data)
    if kind == "preference_pairs":
        if cfg.data is None:
            raise UserError(f"config key `data`: method {cfg.method} needs preference pairs for "
                            f"task {cfg.task} (`chosen` and `rejected`)")
        return load_preference_pairs(task, cfg.data)
    return load_queries(task, cfg.data)


def checked_inputs(cfg: TrainConfig, task):
    """What the method trains from (method_data), after reading every file the config names
    (SFT warm-up data, the principle file), so that a bad one fails before anything loads."""
    examples = method_data(cfg, task)
    if cfg.sft_data:
        load_sft_pairs(task, cfg.sft_data)
    if isinstance(cfg, PLEConfig):
        cfg.principle_text  # noqa: B018 - reads principle_file
    return examples


def run_training(cfg: TrainConfig, overwrite: bool = False, resume: bool = False) -> dict:
    """Check every input, then load the models and train. Returns the run summary."""
    writes = not resume and os.environ.get("RANK", "0") == "0"  # the process that writes
    if resume:
        check_resume(cfg)
    elif writes:
        check_output_dir(cfg.output_dir, overwrite)
    task = TASKS[cfg.task]
    examples = checked_inputs(cfg, task)
    queries = [e[0] if isinstance(e, tuple) else e for e in examples]
    if cfg.eval_steps and not cfg.eval_queries:
        raise UserError(f"config key `eval_steps` = {cfg.eval_steps}: needs eval_queries (the "
                        f"held-out queries to evaluate on)")
    eval_queries = builtin_queries(cfg.task, "heldout")[:cfg.eval_queries]
    method = METHODS[cfg.method]
    if method.trl and resume:
        raise UserError(f"--resume: method {cfg.method} is trained by TRL in one go; start it "
                        f"again with --overwrite")
    from ple.models import context_length, init_kwargs, load_policy, load_tokenizer, paper_lora
    from ple.online import make_prompter
    from ple.rewards import load_reward
    from ple.rollout import check_context, length_filter

    # Prompts too long for the model are the user's mistake: say so before loading weights,
    # which needs only the tokenizer and the config.
    prompter = make_prompter(cfg, load_tokenizer(cfg.model))
    kept, dropped = length_filter(prompter, queries, cfg.max_prompt_tokens,
                                  f"data {cfg.data or '(built-in)'}")
    if not method.trl:
        check_context(prompter, kept, cfg.max_new_tokens, context_length(cfg.model))
    # A method that trains from pairs (SFT, DPO on human pairs) uses the reward for
    # evaluation only.
    needs_reward = data_kind(cfg) == "queries" or cfg.eval_queries
    reward = load_reward(cfg.reward, cfg.task, cfg.reward_label) if needs_reward else None
    if writes:
        prepare_output_dir(cfg.output_dir, overwrite)
    if method.trl:
        from ple.baselines.trl_run import TRLRun

        if dropped:
            log.warning("dropped %d of %d examples whose prompt is longer than "
                        "max_prompt_tokens = %d", dropped, len(queries), cfg.max_prompt_tokens)
        kept_set = set(kept)
        examples = [e for e in examples if (e[0] if isinstance(e, tuple) else e) in kept_set]
        model, tokenizer = load_policy(cfg.model, cfg.seed, init_kwargs(
            cfg.model_init_kwargs, lora=cfg.use_lora, bf16=cfg.bf16))
        return method.runner()(TRLRun(cfg, model, tokenizer, reward, eval_queries), examples)
    peft_config = paper_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) \
        if cfg.use_lora else None
    trainer = method.runner()(model=cfg.model, args=cfg, reward_funcs=reward,
                              peft_config=peft_config)
    return trainer.train(resume_from_checkpoint=resume)
