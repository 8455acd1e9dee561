"""`ple eval`: measure a base model, or a trained adapter on it, on a task's test split.

All numbers come from the same N test examples, drawn with the seed:
- perplexity of the reference responses (HH chosen, IMDb positive reviews, TL;DR summaries)
  under the evaluated model, each conditioned on its query exactly as the policy sees it;
- BLEU of the generated responses against those references (sacrebleu, see metrics; an
  IMDb reference cut to its response's length first);
- mean reward of the generated responses, with its standard error;
- the KL of the evaluated model (adapter on) from the frozen base (`--model`, adapter off)
  on the same responses: per response the sum over its tokens of log pi - log pi_base, mean
  and standard error over responses (see metrics.response_kl); 0 without --adapter, where
  the model is its own base;
- guards against reward hacking on the same responses (see evaluate_plain): their
  perplexity under the frozen base model, distinct-1/2, and the share in the assistant
  register (metrics.ASSISTANT_SPEAK).

Heavy modules (torch, transformers) are imported inside the functions, so that building the
`ple` parser stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ple.errors import UserError
from ple.tasks import TASKS, Task, builtin_queries

EVAL_FILES = ("eval.json", "eval_samples.jsonl")


def _doc(text: str) -> dict:
    return {"help": text}


@dataclass
class EvalConfig:
    """Everything one `ple eval` needs. Field docs double as `ple eval --help`."""

    model: str = field(
        default="default",
        metadata=_doc("Base model: hub id, local directory, .gguf file, `default` or `tiny`, "
                      "as for `ple train`. Default `default`."))
    adapter: str | None = field(
        default=None,
        metadata=_doc("A PEFT adapter directory (a run's adapter/) evaluated on top of the "
                      "model. Default: none, the base model itself is evaluated."))
    task: str = field(
        default="imdb", metadata={"choices": sorted(TASKS),
                                  **_doc("Task: hh, imdb or tldr. Default imdb.")})
    test_data: str | None = field(
        default=None,
        metadata=_doc("Test split, a local .jsonl/.jsonl.gz/.json/.parquet file in the task's "
                      "own format, with references: hh `chosen` transcripts (the last "
                      "Assistant turn is the reference), imdb `text` and `label` (positive "
                      "reviews only: the first 8 words are the query, the rest is the "
                      "reference), tldr `prompt` and `summary`. Default: the task's built-in "
                      "held-out queries, which have no references (no perplexity, no BLEU)."))
    reward: str | None = field(
        default=None,
        metadata=_doc("Reward, as for `ple train`: `vader`, a classifier (local dir or hub "
                      "id) or `module:function`. Default: the task's offline reward (vader "
                      "for imdb)."))
    reward_label: int = field(
        default=1, metadata=_doc("Which label's logit a classifier reward uses. Default 1."))
    extra_rewards: str | None = field(
        default=None,
        metadata=_doc("More scorers of the same responses, comma-separated reward specs (e.g. "
                      "`vader` beside a trained classifier): an independent second opinion "
                      "that no method trained on, so a gain only the training reward sees "
                      "shows as such. Each gets its mean and standard error in eval.json "
                      "(`extra_rewards`) and its score per response in eval_samples.jsonl. "
                      "Default: none."))
    n: int = field(
        default=64,
        metadata={"aliases": ["-n"], **_doc(
            "Test examples evaluated, drawn without replacement with the seed (all of them "
            "when there are fewer). Paper: 1024 queries for the reward (2048 on HH) and the "
            "whole test set for perplexity. Default 64.")})
    greedy: bool = field(
        default=False,
        metadata=_doc("Greedy decoding instead of sampling with temperature, top_p and "
                      "top_k. Default: sampling."))
    seed: int = field(
        default=0,
        metadata=_doc("Seed of the test draw and of sampling (and of the weights of `tiny`). "
                      "Default 0."))
    max_new_tokens: int = field(
        default=48, metadata=_doc("Longest response generated. Default 48, as `ple train`."))
    temperature: float = field(
        default=1.0, metadata=_doc("Sampling temperature. Default 1.0, as `ple train`."))
    top_p: float = field(
        default=1.0, metadata=_doc("Nucleus sampling mass. Default 1.0, as `ple train`."))
    top_k: int = field(
        default=0, metadata=_doc("Top-k sampling; 0 disables. Default 0, as `ple train`."))
    max_prompt_tokens: int = field(
        default=256,
        metadata=_doc("Test queries whose prompt is longer are dropped (counted in eval.json) "
                      "before the draw. Default and paper: 256."))
    max_reference_tokens: int = field(
        default=512,
        metadata=_doc("A reference is scored on at most this many tokens (and at most what "
                      "fits the model's context after its prompt); the references cut are "
                      "counted in eval.json. Default 512."))
    batch_size: int = field(
        default=8,
        metadata=_doc("Sequences generated or scored at once; bounds memory. With sampling "
                      "it changes which responses are drawn, not their distribution. "
                      "Default 8."))
    chat_template: bool | None = field(
        default=None,
        metadata=_doc("Format prompts with the tokenizer's chat template; set it as the "
                      "evaluated run was trained. Default: yes when the tokenizer has one."))
    output_dir: str = field(
        default="runs/eval",
        metadata=_doc("Where eval.json and eval_samples.jsonl go (a run's own directory is "
                      "fine). Default runs/eval."))


FLAGS = {f.name: "-n" if f.name == "n" else "--" + f.name.replace("_", "-")
         for f in dataclasses.fields(EvalConfig)}


def validate(cfg: EvalConfig) -> EvalConfig:
    """Range checks; each failure names the flag."""
    def need(ok: bool, key: str, rule: str):
        if not ok:
            raise UserError(f"{FLAGS[key]} {getattr(cfg, key)!r}: {rule}")

    need(cfg.task in TASKS, "task", f"must be one of {', '.join(TASKS)}")
    for key in ("n", "max_new_tokens", "max_prompt_tokens", "max_reference_tokens",
                "batch_size"):
        need(getattr(cfg, key) >= 1, key, "must be >= 1")
    need(cfg.temperature > 0, "temperature", "must be > 0")
    need(0.0 < cfg.top_p <= 1.0, "top_p", "must be in (0, 1]")
    need(cfg.top_k >= 0, "top_k", "must be >= 0")
    return cfg


def load_test_split(task: Task, test_data: str | None
                    ) -> tuple[list[tuple[str, str | None]], int]:
    """(query, reference) pairs of the test split, and the number of records that are not a
    test example (IMDb reviews that are negative or 8 words or shorter). The built-in held-out
    queries have no reference (None)."""
    from ple.data_files import load_records

    if test_data is None:
        return [(q, None) for q in builtin_queries(task.name, "heldout")], 0
    records = load_records(test_data)
    if not records:
        raise UserError(f"--test-data {test_data}: no records (an empty test split)")
    pairs = [pair for r in records if (pair := task.sft_pair(r))]
    if not pairs:
        raise UserError(f"--test-data {test_data}: none of its {len(records)} records is a "
                        f"test example for task {task.name} (imdb uses positive reviews of "
                        f"more than 8 words)")
    return pairs, len(records) - len(pairs)


def check_adapter_tokenizer(adapter: str, model_name: str, tokenizer) -> str:
    """Refuse an adapter trained with another vocabulary than `tokenizer`'s, and say what it
    was compared with (for eval.json). A tokenizer saved in the adapter directory is used;
    otherwise, for a ple run's adapter/ (`ple train` saves only the adapter's weights there),
    the tokenizer of the model named in the run's config.yaml."""
    from transformers import AutoTokenizer

    from ple.models import load_tokenizer

    adapter_dir = Path(adapter)
    run_config = adapter_dir.parent / "config.yaml"
    if (adapter_dir / "tokenizer_config.json").is_file():
        source = f"the tokenizer in {adapter}"
        other = AutoTokenizer.from_pretrained(adapter_dir, trust_remote_code=False)
    elif run_config.is_file():
        trained_on = (yaml.safe_load(run_config.read_text()) or {}).get("model")
        source = f"model {trained_on} of {run_config}"
        if trained_on == model_name:
            return f"same model as {run_config}"
        try:
            other = load_tokenizer(str(trained_on))
        except UserError as e:  # the run's model moved; the user's --model may be the same
            return f"not checked: {source} cannot be loaded ({e})"
    else:
        return "not checked: no tokenizer in the adapter directory and no ple run above it"
    ours, theirs = tokenizer.get_vocab(), other.get_vocab()
    if ours != theirs:
        differ = len(set(ours.items()) ^ set(theirs.items()))
        raise UserError(f"--adapter {adapter}: its tokenizer ({source}, {len(theirs)} tokens) "
                        f"differs from model {model_name}'s ({len(ours)} tokens; {differ} "
                        f"token-id entries differ)")
    return f"same vocabulary as {source}"


def make_prompter(cfg: EvalConfig, tokenizer):
    """Plain prompts as the policy sees them in training (ple.rollout.Prompter)."""
    from ple.rollout import Prompter

    use_chat = cfg.chat_template
    if use_chat is None:
        use_chat = tokenizer.chat_template is not None
    elif use_chat and tokenizer.chat_template is None:
        raise UserError(f"--chat-template true: model {cfg.model}'s tokenizer has none")
    task = TASKS[cfg.task]
    return Prompter(tokenizer, task, task.principle, use_chat)


def reference_logprob(model, tokenizer, prompts: list[list[int]], references: list[str],
                      limit: int, batch_size: int) -> tuple[float, int, int]:
    """Sum of log p(reference tokens | prompt) under `model`, the number of those tokens,
    and how many references were cut to `limit` tokens (or to the model's context). A
    reference ends in the end-of-sequence token, as SFT targets do: where to stop is part
    of the response."""
    import torch
    from tqdm.auto import tqdm

    from ple.sequences import pack, response_token_logprobs

    context = getattr(model.config, "max_position_embeddings", None)
    targets, cut = [], 0
    for prompt, reference in zip(prompts, references):
        ids = tokenizer(reference, add_special_tokens=False)["input_ids"] + \
            [tokenizer.eos_token_id]
        room = min(limit, context - len(prompt)) if context else limit
        if len(ids) > room:
            ids, cut = ids[:room], cut + 1
        targets.append(ids)
    # Batches of similar lengths pad less; the sums do not depend on the order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(targets[i]))
    prompts, targets = [prompts[i] for i in order], [targets[i] for i in order]
    logp_sum, n_tokens = 0.0, 0
    with torch.no_grad():
        for i in tqdm(range(0, len(prompts), batch_size), desc="reference perplexity",
                      unit="batch", leave=False):
            batch = pack(prompts[i:i + batch_size], targets[i:i + batch_size],
                         tokenizer.pad_token_id)
            logp_sum += float(response_token_logprobs(model, batch).sum())
            n_tokens += int(batch["response_mask"].sum())
    return logp_sum, n_tokens, cut


def extra_reward_specs(cfg: EvalConfig) -> list[str]:
    return [spec.strip() for spec in (cfg.extra_rewards or "").split(",") if spec.strip()]


def _se_or_none(se: float) -> float | None:
    return None if math.isnan(se) else se  # n = 1: no spread to measure


def _refuse_earlier_eval(out: Path, overwrite: bool) -> None:
    old = [name for name in EVAL_FILES if (out / name).exists()]
    if old and not overwrite:
        raise UserError(f"--output-dir {out} holds an earlier evaluation ({old[0]}); pass "
                        f"--overwrite to replace it or choose another directory")


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a crash leaves no half-written file under `path`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def evaluate(cfg: EvalConfig, overwrite: bool = False) -> dict:
    """Check every input, then load the model (+ adapter) and reward, measure, and write
    OUTPUT_DIR/eval_samples.jsonl and OUTPUT_DIR/eval.json. Returns what eval.json holds."""
    import torch

    from ple.evaluation.heldout import evaluate_plain
    from ple.evaluation.metrics import (corpus_bleu, cut_to_response_length, mean_and_se,
                                        perplexity)
    from ple.models import check_adapter_dir, load_adapter, load_policy, load_tokenizer
    from ple.rewards import checked_scores, load_reward, reward_model_id
    from ple.rollout import length_filter

    validate(cfg)
    out = Path(cfg.output_dir)
    _refuse_earlier_eval(out, overwrite)
    if cfg.adapter:
        check_adapter_dir(cfg.adapter)
    task = TASKS[cfg.task]
    examples, without_reference = load_test_split(task, cfg.test_data)
    reward = load_reward(cfg.reward, cfg.task, cfg.reward_label)
    extra = {spec: load_reward(spec, cfg.task) for spec in extra_reward_specs(cfg)}
    tokenizer = load_tokenizer(cfg.model)
    tokenizer_check = check_adapter_tokenizer(cfg.adapter, cfg.model, tokenizer) \
        if cfg.adapter else None
    source = cfg.test_data or f"(built-in {cfg.task} held-out queries)"
    kept, too_long = length_filter(make_prompter(cfg, tokenizer), [q for q, _ in examples],
                                   cfg.max_prompt_tokens, f"--test-data {source}")
    kept = set(kept)
    examples = [e for e in examples if e[0] in kept]
    drawn = sorted(random.Random(cfg.seed).sample(range(len(examples)),
                                                  min(cfg.n, len(examples))))
    queries = [examples[i][0] for i in drawn]
    references = [examples[i][1] for i in drawn]

    model, tokenizer = load_policy(cfg.model, cfg.seed)
    prompter = make_prompter(cfg, tokenizer)
    # Without an adapter the evaluated model is its own frozen base.
    frozen_base = None if cfg.adapter else model
    if cfg.adapter:
        model = load_adapter(model, cfg.adapter, cfg.model)
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
        for scorer in (reward, *extra.values()):
            if hasattr(scorer, "to"):
                scorer.to("cuda")
    # Greedy decoding is sampling from the top token alone: the same code path, deterministic.
    sampling = dataclasses.replace(cfg, temperature=1.0, top_p=1.0, top_k=1) \
        if cfg.greedy else cfg
    plain = evaluate_plain(model, tokenizer, prompter, reward, queries, sampling, frozen_base,
                           cfg.batch_size, progress=True)
    responses = [s["response"] for s in plain["samples"]]

    result = {"config": dataclasses.asdict(cfg), "test_data": source,
              "test_examples": len(examples), "records_without_reference": without_reference,
              "queries_dropped_too_long": too_long, "n": plain["n"],
              "reference_perplexity": None, "reference_tokens": 0, "references_truncated": 0,
              "bleu": None, "bleu_signature": None, "bleu_references_cut": None}
    if references[0] is not None:
        logp_sum, n_tokens, cut = reference_logprob(
            model, tokenizer, [prompter.ids(q) for q in queries], references,
            cfg.max_reference_tokens, cfg.batch_size)
        bleu_references = cut_to_response_length(references, responses) \
            if task.open_ended_reference else references
        bleu, signature = corpus_bleu(responses, bleu_references)
        result.update(reference_perplexity=perplexity(logp_sum, n_tokens),
                      reference_tokens=n_tokens, references_truncated=cut, bleu=bleu,
                      bleu_signature=signature, bleu_references_cut=task.open_ended_reference)
    se = plain["reward_se"]
    result.update(reward=reward.name, reward_model=reward_model_id(reward),
                  reward_mean=plain["reward_mean"],
                  reward_se=_se_or_none(se),
                  base_perplexity=plain["base_perplexity"], distinct_1=plain["distinct_1"],
                  distinct_2=plain["distinct_2"], adapter_tokenizer=tokenizer_check,
                  kl_mean=plain["kl_mean"], kl_se=_se_or_none(plain["kl_se"]),
                  assistant_speak=plain["assistant_speak"])
    extra_scores = {spec: checked_scores(r, queries, responses) for spec, r in extra.items()}
    result["extra_rewards"] = {}
    for spec, values in extra_scores.items():
        mean, spread = mean_and_se(values)
        result["extra_rewards"][spec] = {"mean": mean, "se": _se_or_none(spread)}

    out.mkdir(parents=True, exist_ok=True)
    rows = [{**s, "reference": ref,
             **({"extra_rewards": {spec: v[i] for spec, v in extra_scores.items()}}
                if extra_scores else {})}
            for i, (s, ref) in enumerate(zip(plain["samples"], references))]
    _write(out / "eval_samples.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    _write(out / "eval.json", json.dumps(result, indent=1) + "\n")
    return result
