"""Time one PLE step by phase and put beside it, measured in the same run with the same
queries, batch and lengths, the floor and the peer:

- ple:   PLETrainer's step as `train` runs it: one generate call for y and y' (2B
         sequences), VADER scores, replay window 1, one update over the B pairs.
- floor: a bare `model.generate` of the same 2B prompts and one forward/backward over the
         2B sequences (plain prompt + response, as PLE trains them) with the HF LM loss and
         the same LoRA and AdamW: what any step of this size costs, with no PLE logic.
- peer:  one step of TRL's RLOOTrainer with 2 generations per query (B queries, 2B
         sequences), the same LoRA, learning rate and VADER reward, set up as
         `ple train --method rloo` sets it up (ple.baselines.rloo). It also runs its
         reference forward for the KL term (beta 0.05, TRL's default).

Equal lengths: every response is exactly --max-new-tokens tokens (stop tokens are
suppressed until then: min_new_tokens = max_new_tokens), so the three generate and train on
the same number of tokens. All three train in float32, and all three with activation
checkpointing or all three without (--gradient-checkpointing; TRL's RLOO defaults to it,
ple does not). Each contender runs in its own
process, so peak memory is measured alike: on CPU the resident set's high-water mark, on
CUDA torch.cuda.max_memory_allocated, per phase. One warm-up step, then --steps measured
steps; times are medians, the peak is the largest.

    python benchmarks/step_bench.py --model tiny --steps 1          # a quick check
    python benchmarks/step_bench.py --out /tmp/step.json --append-markdown BENCHMARKS.md
    python benchmarks/step_bench.py --gradient-checkpointing --append-markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from benchlib import (PhaseMeter, add_output_arguments, memory_kind, memory_now_mib,
                      publish)

CONTENDERS = ("ple", "floor", "peer")
PHASES = ("generate", "score", "train")
# PLE's step time against the floor's and the peer's, and its peak memory against the peer's.
TARGETS = {"ple_over_floor_time": 1.2, "ple_over_peer_time": 0.8, "ple_over_peer_memory": 1.0}


def bench_config(args, output_dir: str):
    from ple.config import load_config

    return load_config(None, {"task": "imdb", "model": args.model, "reward": "vader",
                              "batch_size": args.batch_size,
                              "per_device_train_batch_size": args.batch_size,
                              "max_new_tokens": args.max_new_tokens, "replay_window": 1,
                              "max_steps": 1 + args.steps, "seed": args.seed,
                              # the floor and the peer run in float32: so does PLE here
                              "bf16": False, "output_dir": output_dir,
                              "activation_checkpointing": args.gradient_checkpointing})


def force_length(model, tokenizer, n: int) -> None:
    """Every response exactly n tokens: stop tokens are suppressed until the n-th."""
    from ple.rollout import stop_ids

    model.generation_config.min_new_tokens = n
    model.generation_config.eos_token_id = sorted(stop_ids(model, tokenizer))


def ple_steps(cfg, model, tokenizer, reward, queries, meter: PhaseMeter) -> list[dict]:
    from transformers import TrainerCallback

    from ple.models import paper_lora
    from ple.trainer import PLETrainer

    trainer = PLETrainer(model=model, processing_class=tokenizer, args=cfg,
                         train_dataset=[{"prompt": q} for q in queries], reward_funcs=reward,
                         peft_config=paper_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout))
    trainer._generate = meter.around("generate", trainer._generate, then="train")
    reward.score = meter.around("score", reward.score, then="train")
    records = []

    class StepRecorder(TrainerCallback):
        # From before the step's generation to after its optimizer step.
        def on_step_begin(self, args, state, control, **kwargs):
            self.tokens = trainer.totals["generated_tokens"]
            meter.enter("train")

        def on_step_end(self, args, state, control, **kwargs):
            records.append(meter.finish(tokens=trainer.totals["generated_tokens"] - self.tokens))

    trainer.add_callback(StepRecorder())
    trainer.train()
    return records


def floor_steps(cfg, model, tokenizer, reward, queries, meter: PhaseMeter) -> list[dict]:
    import torch

    from peft import get_peft_model

    from ple.models import paper_lora
    from ple.online import make_prompter
    from ple.rollout import left_pad

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    lora = paper_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    model = get_peft_model(model, lora).to(device)
    if cfg.activation_checkpointing:  # it acts in training mode only: generation is unaffected
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs=cfg.activation_checkpointing_kwargs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.learning_rate)
    prompter = make_prompter(cfg, tokenizer)
    plain = [prompter.ids(q) for q in queries]
    ids, mask = left_pad(plain + [prompter.ids(q, guided=True) for q in queries],
                         tokenizer.pad_token_id)
    train_ids, train_mask = left_pad(plain * 2, tokenizer.pad_token_id)
    ids, mask, train_ids, train_mask = (t.to(device) for t in (ids, mask, train_ids,
                                                                 train_mask))
    records = []
    for _ in range(cfg.max_steps):
        meter.enter("generate")
        model.eval()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                 max_new_tokens=cfg.max_new_tokens,
                                 temperature=cfg.temperature, top_p=cfg.top_p,
                                 top_k=cfg.top_k, pad_token_id=tokenizer.pad_token_id)
        meter.enter("train")
        responses = out[:, ids.shape[1]:]
        labels = torch.cat([torch.full_like(train_ids, -100), responses], dim=1)
        model.train()
        loss = model(input_ids=torch.cat([train_ids, responses], dim=1),
                     attention_mask=torch.cat([train_mask, torch.ones_like(responses)], dim=1),
                     labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        records.append(meter.finish(tokens=responses.numel()))
    return records


def peer_steps(cfg, model, tokenizer, reward, queries, meter: PhaseMeter) -> list[dict]:
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from ple.baselines.rloo import RewardBridge, rloo_args, rloo_dataset
    from ple.baselines.trl_run import TRLRun

    run = TRLRun(cfg, model, tokenizer, reward)
    run.out.mkdir(parents=True, exist_ok=True)  # RewardBridge writes samples.jsonl there
    records = []

    class StepRecorder(TrainerCallback):
        # From before the batch's generation to after the optimizer step.
        def on_step_begin(self, args, state, control, **kwargs):
            self.tokens = run.totals["generated_tokens"]
            meter.enter("train")

        def on_step_end(self, args, state, control, **kwargs):
            records.append(meter.finish(tokens=run.totals["generated_tokens"] - self.tokens))

    tokenizer.padding_side = "right"  # as TRLRun.run: TRL pads training batches on the right
    trl_args = run.trl_args(RLOOConfig, **rloo_args(cfg), bf16=False,
                            generation_kwargs={"min_new_tokens": cfg.max_new_tokens})
    trainer = RLOOTrainer(model=run.model, args=trl_args,
                          train_dataset=rloo_dataset(run, queries), processing_class=tokenizer,
                          reward_funcs=meter.around("score", RewardBridge(run), then="train"),
                          callbacks=[StepRecorder()])
    trainer._generate = meter.around("generate", trainer._generate, then="train")
    trainer.train()
    return records


def run_contender(name: str, args) -> dict:
    """One contender's warm-up and measured steps, in this process."""
    from ple.models import load_policy
    from ple.rewards import load_reward
    from ple.tasks import builtin_queries

    queries = builtin_queries("imdb", "train")
    if args.batch_size > len(queries):
        sys.exit(f"--batch-size {args.batch_size}: the imdb built-in set has "
                 f"{len(queries)} queries")
    # The same B queries every step, for every contender.
    queries = queries[:args.batch_size]
    model, tokenizer = load_policy(args.model, args.seed)
    force_length(model, tokenizer, args.max_new_tokens)
    steps = {"ple": ple_steps, "floor": floor_steps, "peer": peer_steps}[name]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(args, tmp)
        memory_before = memory_now_mib()
        records = steps(cfg, model, tokenizer, load_reward("vader", "imdb"), queries,
                        PhaseMeter())
    return {"memory_after_load_mib": memory_before, "warmup": records[0],
            "steps": records[1:]}


def summarize(result: dict) -> dict:
    steps = result["steps"]
    return {
        "step_seconds": statistics.median(s["step_seconds"] for s in steps),
        "phase_seconds": {ph: statistics.median(s["seconds"].get(ph, 0.0) for s in steps)
                          for ph in PHASES},
        "tokens_per_step": statistics.median(s["tokens"] for s in steps),
        "tokens_per_second": statistics.median(s["tokens"] / s["seconds"]["generate"]
                                               for s in steps),
        "peak_mib": max(s["step_peak_mib"] for s in steps),
        "phase_peak_mib": {ph: max(s["peak_mib"].get(ph, 0.0) for s in steps)
                           for ph in PHASES},
        "memory_after_load_mib": result["memory_after_load_mib"],
    }


def ratios(summary: dict) -> dict:
    ple, floor, peer = (summary[c] for c in CONTENDERS)
    return {"ple_over_floor_time": ple["step_seconds"] / floor["step_seconds"],
            "ple_over_peer_time": ple["step_seconds"] / peer["step_seconds"],
            "ple_over_peer_memory": ple["peak_mib"] / peer["peak_mib"]}


def report(args, summary: dict, found: dict) -> list[str]:
    equal = len({s["tokens_per_step"] for s in summary.values()}) == 1
    lines = [f"Batch {args.batch_size} imdb queries -> {2 * args.batch_size} sequences of "
             f"exactly {args.max_new_tokens} new tokens (lengths equal across contenders: "
             f"{'yes' if equal else 'NO'}); activation checkpointing "
             f"{'on' if args.gradient_checkpointing else 'off'} for all three; model "
             f"`{args.model}`; 1 warm-up step, median of "
             f"{args.steps} measured. Memory: {memory_kind()}, each contender in its own "
             f"process.", "",
             "| contender | step s | generate s | score s | train s | tokens/step | "
             "tokens/s (generate) | peak MiB | after load MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in CONTENDERS:
        s = summary[name]
        phases = " | ".join(f"{s['phase_seconds'][ph]:.3f}" for ph in PHASES)
        lines.append(f"| {name} | {s['step_seconds']:.3f} | {phases} | "
                     f"{s['tokens_per_step']:.0f} | {s['tokens_per_second']:.1f} | "
                     f"{s['peak_mib']:.0f} | {s['memory_after_load_mib']:.0f} |")
    lines += ["", "| ratio | value | target | met |", "|---|---|---|---|"]
    for key, value in found.items():
        lines.append(f"| {key} | {value:.2f} | <= {TARGETS[key]} | "
                     f"{'yes' if value <= TARGETS[key] else 'no'} |")
    lines += ["", "PLE's `train` is the rest of its step (pairs, update, samples rows); the "
              "peer's is its reference forward, loss, backward and optimizer step."]
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="default, tiny, or a path")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="queries per step B; 2B sequences (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=48,
                        help="length of every response (default 48)")
    parser.add_argument("--steps", type=int, default=3,
                        help="measured steps after one warm-up step (default 3)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="all three contenders recompute activations in the backward "
                             "pass (TRL's default for RLOO); without it none does")
    add_output_arguments(parser)
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    # peft and TRL call names transformers 5 has deprecated (as ple.cli filters).
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing", category=FutureWarning)
    if args.contender:  # a child process: one contender
        Path(args.result).write_text(json.dumps(run_contender(args.contender, args)))
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONTENDERS:
            print(f"--- {name}", flush=True)
            result = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--model", args.model,
                            "--batch-size", str(args.batch_size),
                            "--max-new-tokens", str(args.max_new_tokens),
                            "--steps", str(args.steps), "--seed", str(args.seed),
                            *(["--gradient-checkpointing"] if args.gradient_checkpointing
                              else []),
                            "--contender", name, "--result", str(result)], check=True)
            results[name] = json.loads(result.read_text())
    summary = {name: summarize(r) for name, r in results.items()}
    found = ratios(summary)
    lines = report(args, summary, found)
    checkpointing = "with" if args.gradient_checkpointing else "without"
    publish(args, f"Step benchmark: PLE, floor, TRL RLOO, {checkpointing} activation "
            f"checkpointing", lines, {"memory": memory_kind(), "summary": summary,
                                      "ratios": found, "targets": TARGETS, "steps": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
