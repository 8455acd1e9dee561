"""Generation speed: the path ple samples with against the one it had, each speed-up alone, and
this machine's floor, all measured in one run on the same model, prompts, lengths and seed.

Paths (a LoRA policy, r 8 on all linear layers, with a non-zero adapter as after training):
- today:      `model.generate` on the PEFT-wrapped float32 policy, sampling with
              torch.multinomial (ple's path before the generation work).
- merged:     the same, on a float32 copy with the LoRA merged (no LoRA matmuls).
- bf16:       the same, on a bf16 copy with the LoRA merged (ple.sampling_model).
- sampler:    the float32 PEFT policy, drawing with ple.rollout.InverseCDFSampler.
- ple:        what ple runs now: `rollout.sample` on `SamplingModel("bfloat16").of(policy)`
              (bf16 merged copy + InverseCDFSampler), the copy's refresh included.
- ple-wide:   ple's path on --wide-batch sequences at once (held-out evaluation's batches).

Every response is exactly --max-new-tokens long (stop tokens suppressed until then), so all
paths make the same number of tokens. Per path: tokens/s over the whole call (prefill
included), the prefill alone, and per decode step the model's forward and the sampling draw.
The floor is measured here too, not assumed: the matmul FLOP rate (float32 and bf16, at a
decode step's shapes) and the memory read bandwidth; a decode step can go no faster than
max(FLOPs / rate, weight bytes / bandwidth). The bf16 copy's effect on the distribution:
per-token log-probs of the sampled sequences under the bf16 copy against the float32 policy.

    python benchmarks/generation_bench.py --json out.json --append-markdown BENCHMARKS.md
    python benchmarks/generation_bench.py --model tiny --repeats 1 --max-new-tokens 4  # a check
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from benchlib import add_output_arguments, publish


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def machine_floor(hidden: int, repeats: int) -> dict:
    """FLOP rate of a decode step's largest matmul shape, float32 and bf16, and the rate at
    which this machine reads memory (a 256 MiB sum)."""
    rows, width = 16, 4 * hidden
    rates = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        x, w = torch.randn(rows, hidden, dtype=dtype), torch.randn(width, hidden, dtype=dtype)
        # 64 weights of 4h x h each, so the weights come from memory, not from the cache.
        weights = [w.clone() for _ in range(64)]
        seconds = timed(lambda: [torch.nn.functional.linear(x, m) for m in weights], repeats)
        rates[name] = 2 * rows * width * hidden * len(weights) / seconds
    big = torch.ones(64 * 2**20)  # 256 MiB of float32
    bandwidth = big.numel() * 4 / timed(big.sum, repeats)
    return {"flops_per_second": rates, "bytes_per_second": bandwidth}


def step_floor(n_params: int, sequences: int, floor: dict, dtype: str) -> float:
    """Seconds a decode step needs at least: every weight read once, 2 FLOPs per weight and
    sequence."""
    bytes_per = 2 if dtype == "bfloat16" else 4
    return max(2 * n_params * sequences / floor["flops_per_second"][dtype],
               n_params * bytes_per / floor["bytes_per_second"])


def generate_multinomial(model, tokenizer, prompts, n: int):
    """Generation as ple did it before: generate's own sampler (torch.multinomial)."""
    from ple.rollout import left_pad

    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                              max_new_tokens=n, temperature=1.0, top_p=1.0, top_k=0,
                              pad_token_id=tokenizer.pad_token_id)


def decode_step_parts(model, tokenizer, prompts, sampler: str, repeats: int) -> dict:
    """One decode step taken apart: the model's forward over one new token per sequence
    (after a prefill) and the draw of the next tokens from its logits."""
    from ple.rollout import InverseCDFSampler, left_pad

    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)
        length = cache.get_seq_length()

        def forward():
            extra = cache.get_seq_length() - length
            if extra:  # every repeat decodes the same position
                cache.crop(-extra)
            return model(input_ids=token, attention_mask=mask, past_key_values=cache,
                         use_cache=True).logits[:, -1].float()

        logits = forward()
        draw = (lambda: torch.multinomial(torch.softmax(logits, -1), 1)) \
            if sampler == "multinomial" else \
            (lambda: InverseCDFSampler(1.0, 1.0, 0)(None, logits).argmax(-1))
        return {"forward_s": timed(forward, repeats), "sample_s": timed(draw, repeats)}


def prefill_seconds(model, tokenizer, prompts, repeats: int) -> float:
    from ple.rollout import left_pad

    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    with torch.no_grad():
        return timed(lambda: model(input_ids=ids, attention_mask=mask, use_cache=True,
                                   logits_to_keep=1), repeats)


def logprob_gap(policy, bf16_model, tokenizer, prompts, responses) -> dict:
    """Per-token log-probs of sampled sequences under the bf16 copy against the float32
    policy: mean |difference|, and the mean KL between their next-token distributions."""
    from ple.sequences import pack

    batch = pack(prompts, responses, tokenizer.pad_token_id)
    r_width = batch["labels"].shape[1]
    mask = batch["response_mask"].bool()
    with torch.no_grad():
        logps = [torch.log_softmax(m(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"],
                                     logits_to_keep=r_width + 1).logits[:, :-1].float(), -1)
                 for m in (policy, bf16_model)]
    picked = [lp.gather(-1, batch["labels"].unsqueeze(-1)).squeeze(-1)[mask] for lp in logps]
    kl = (logps[0].exp() * (logps[0] - logps[1])).sum(-1)[mask]
    return {"mean_abs_token_logprob_diff": float((picked[0] - picked[1]).abs().mean()),
            "mean_token_kl_f32_to_bf16": float(kl.mean()), "tokens": int(mask.sum())}


def run(args) -> dict:
    from peft import get_peft_model

    from ple.config import load_config
    from ple.models import load_policy, paper_lora
    from ple.online import make_prompter
    from ple.rollout import sample, stop_ids
    from ple.sampling_model import SamplingModel, merged_weights
    from ple.tasks import builtin_queries

    torch.manual_seed(args.seed)
    base, tokenizer = load_policy(args.model, args.seed)
    tokenizer.padding_side = "left"
    n = args.max_new_tokens
    base.generation_config.min_new_tokens = n  # every response exactly n tokens
    base.generation_config.eos_token_id = sorted(stop_ids(base, tokenizer))
    policy = get_peft_model(copy.deepcopy(base), paper_lora())
    with torch.no_grad():  # an adapter as after some training: the merge is not a no-op
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01)
    policy.eval()
    cfg = load_config(None, {"task": "imdb", "model": args.model, "reward": "vader"})
    prompter = make_prompter(cfg, tokenizer)
    queries = builtin_queries("imdb", "train")
    step = [prompter.ids(q) for q in queries[:args.batch_size]]
    step += [prompter.ids(q, guided=True) for q in queries[:args.batch_size]]
    wide = [prompter.ids(q) for q in queries[:args.wide_batch]]

    merged = copy.deepcopy(base)
    merged.load_state_dict(merged_weights(policy), strict=False)
    merged.eval()
    sampling = SamplingModel("bfloat16")
    bf16 = copy.deepcopy(sampling.of(policy))

    def ple_path(prompts):
        return lambda: sample(sampling.of(policy), tokenizer, prompts, n, 1.0, 1.0, 0)

    def inverse_cdf(model):
        return lambda: sample(model, tokenizer, step, n, 1.0, 1.0, 0)

    paths = {
        "today": (policy, lambda: generate_multinomial(policy, tokenizer, step, n),
                  "multinomial", step, "float32"),
        "merged": (merged, lambda: generate_multinomial(merged, tokenizer, step, n),
                   "multinomial", step, "float32"),
        "bf16": (bf16, lambda: generate_multinomial(bf16, tokenizer, step, n),
                 "multinomial", step, "bfloat16"),
        "sampler": (policy, inverse_cdf(policy), "inverse-cdf", step, "float32"),
        "ple": (bf16, ple_path(step), "inverse-cdf", step, "bfloat16"),
        "ple-wide": (bf16, ple_path(wide), "inverse-cdf", wide, "bfloat16"),
    }
    floor = machine_floor(base.config.hidden_size, args.repeats)
    n_params = sum(p.numel() for p in base.parameters())
    results = {}
    for name, (model, call, sampler, prompts, dtype) in paths.items():
        torch.manual_seed(args.seed)
        seconds = timed(call, args.repeats)
        parts = decode_step_parts(model, tokenizer, prompts, sampler, args.repeats)
        prefill = prefill_seconds(model, tokenizer, prompts, args.repeats)
        tokens = len(prompts) * n
        floor_step = step_floor(n_params, len(prompts), floor, dtype)
        per_step = (seconds - prefill) / max(n - 1, 1)
        results[name] = {"sequences": len(prompts), "seconds": seconds,
                         "tokens_per_second": tokens / seconds, "prefill_s": prefill,
                         "decode_step_s": per_step, **parts, "floor_step_s": floor_step,
                         "decode_step_over_floor": per_step / floor_step}
        print(f"{name}: {tokens / seconds:.1f} tokens/s", file=sys.stderr, flush=True)
    torch.manual_seed(args.seed)
    responses = sample(sampling.of(policy), tokenizer, step, n, 1.0, 1.0, 0)
    return {"paths": results, "floor": floor, "parameters": n_params,
            "speedup": results["ple"]["tokens_per_second"]
            / results["today"]["tokens_per_second"],
            "ple_decode_step_over_floor": results["ple"]["decode_step_over_floor"],
            "bf16_logprob_gap": logprob_gap(policy, bf16, tokenizer, step, responses)}


def report(args, found: dict) -> list[str]:
    floor = found["floor"]
    lines = [f"Model `{args.model}` ({found['parameters'] / 1e6:.0f}M parameters) with a "
             f"LoRA adapter (r 8, all linear layers, B ~ N(0, 0.01)); {args.batch_size} imdb "
             f"queries, plain and principle-guided ({2 * args.batch_size} sequences), every "
             f"response exactly {args.max_new_tokens} new tokens; median of {args.repeats} "
             f"after a warm-up.", "",
             f"Floor measured here: matmul {floor['flops_per_second']['float32'] / 1e9:.0f} "
             f"GFLOP/s float32, {floor['flops_per_second']['bfloat16'] / 1e9:.0f} GFLOP/s "
             f"bf16 (16 rows, the MLP's shape); memory read "
             f"{floor['bytes_per_second'] / 1e9:.1f} GB/s. A decode step's floor is "
             f"max(2 x parameters x sequences / rate, weight bytes / bandwidth).", "",
             "| path | sequences | tokens/s | call s | prefill s | decode step ms | "
             "forward ms | draw ms | floor ms | step / floor |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in found["paths"].items():
        lines.append(f"| {name} | {r['sequences']} | {r['tokens_per_second']:.1f} | "
                     f"{r['seconds']:.2f} | {r['prefill_s']:.2f} | "
                     f"{1e3 * r['decode_step_s']:.0f} | {1e3 * r['forward_s']:.0f} | "
                     f"{1e3 * r['sample_s']:.1f} | {1e3 * r['floor_step_s']:.0f} | "
                     f"{r['decode_step_over_floor']:.1f} |")
    gap = found["bf16_logprob_gap"]
    lines += ["", f"**speedup (ple over today, tokens/s): {found['speedup']:.2f}x**; ple's "
              f"decode step is {found['ple_decode_step_over_floor']:.1f}x its floor. The bf16 "
              f"copy against the float32 policy on {gap['tokens']} sampled tokens: mean "
              f"|log-prob difference| {gap['mean_abs_token_logprob_diff']:.4f}, mean KL of "
              f"the next-token distributions {gap['mean_token_kl_f32_to_bf16']:.5f} nats.",
              "", "Decode step = (call - prefill) / (new tokens - 1); forward and draw are one "
              "decode step's model call and next-token draw, timed alone; the rest of a step "
              "is generate's own work (logits processors, stopping criteria, cache updates)."]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="default, tiny, or a path")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="queries of a training step; 2x sequences (default 8)")
    parser.add_argument("--wide-batch", type=int, default=64,
                        help="sequences of the wide path (default 64)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    add_output_arguments(parser)
    args = parser.parse_args()
    found = run(args)
    publish(args, "Generation benchmark: ple's sampling path against the old one and the "
            "floor", report(args, found), found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
