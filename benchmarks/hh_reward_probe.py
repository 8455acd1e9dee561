"""Why `hh-preference` is at chance on harmless-base, and what reaches the targets (issue 16).

The built-in HH reward's recipe (the same split, tokenizer, 128 tokens with the end kept, and
backbone as `ple reward train`): the frozen default model's features of every training and
held-out pair are computed once and saved under --out, then linear probes (Bradley–Terry on
feature differences, `ple.rewards.train.fit_probe`) are fitted on

- both subsets at once (what the recipe's probe does),
- each subset alone, scored on that subset's held-out pairs,
- each subset alone, combined by a gate: a logistic regression that tells from the same
  features which subset a text came from, weighing the two probes by its probability (so
  the combined reward is still a function of the one forward pass a reward makes),

and, as a backbone-free control, the same fits on bags of words of the two responses.

    python benchmarks/hh_reward_probe.py --out /tmp/hh-probe        # about 80 min on 2 cores

Prints one table (pairwise accuracy on each subset's held-out pairs, ± SE); outputs go under
--out (never into the repository). A rerun reuses the saved features.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from ple.rewards.builtin import recipe_config
from ple.rewards.train import (encode, fit_probe, head_name, load_base_model,
                               load_base_tokenizer, pooled_features, split_examples)


def subset(example) -> str:
    return Path(example.source).parent.name


def backbone_features(cfg, examples, out: Path, name: str) -> dict:
    """{"chosen", "rejected"}: the last token's final hidden state of each text, each side
    cached in out/name-side.safetensors as soon as it is computed."""
    from safetensors.torch import load_file, save_file

    features, model = {}, None
    for side in ("chosen", "rejected"):
        path = out / f"{name}-{side}.safetensors"
        if path.exists():
            features[side] = load_file(path)["features"]
            continue
        if model is None:
            tokenizer = load_base_tokenizer(cfg.base, cfg.truncation_side)
            model = load_base_model(cfg.base, 1, tokenizer, cfg.seed)
        ids = encode(tokenizer, cfg, [getattr(e, side) for e in examples]).ids
        features[side] = pooled_features(model, head_name(model), ids, 16,
                                         tokenizer.pad_token_id, f"{name}: {side}").float()
        save_file({"features": features[side]}, str(path))
    return features


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def bag_of_words(train, held_out) -> tuple[dict, dict]:
    """Binary bags of words (at least 3 training pairs use the word) and length of the
    chosen and rejected responses, each with the prompt's bag of words beside it (for the
    gate; the probes see only the difference, where the prompt's part cancels)."""
    counts = Counter(w for e in train for w in set(words(e.chosen[1])) | set(words(e.rejected[1])))
    vocab = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= 3)}

    def vec(text):
        v = torch.zeros(len(vocab) + 1)
        for w in words(text):
            if w in vocab:
                v[vocab[w]] = 1
        v[-1] = len(words(text)) / 50
        return v

    def pair(prompt, response):
        return torch.cat([vec(response), vec(prompt)])

    def table(examples):
        return {side: torch.stack([pair(*getattr(e, side)) for e in examples])
                for side in ("chosen", "rejected")}
    return table(train), table(held_out)


def probe(features, rows, seed, groups):
    """A Bradley–Terry probe on the pairs `rows` (mirrored so that it needs no intercept)."""
    diff = (features["chosen"] - features["rejected"])[rows].double()
    x = torch.cat([diff, -diff])
    y = torch.cat([torch.ones(len(rows)), torch.zeros(len(rows))]).double()
    w, info = fit_probe(x, y, seed, [groups[i] for i in rows] * 2)
    return w.float(), info


def with_constant(x):
    return torch.cat([x, torch.ones(len(x), 1)], 1)


def gate(features, labels, seed, groups):
    """P(harmless-base | text): logistic regression on the chosen texts' features, fitted
    with the probe's own code on features mirrored by the label, plus a constant feature."""
    x = with_constant(features["chosen"]).double()
    sign = (2 * labels - 1).double()[:, None]
    w, info = fit_probe(torch.cat([x * sign, -x * sign]),
                        torch.cat([torch.ones(len(labels)), torch.zeros(len(labels))]).double(),
                        seed, groups * 2)
    return w.float(), info


def accuracy(margins, rows) -> str:
    m = margins[rows]
    acc = ((m > 0).float() + 0.5 * (m == 0).float()).mean().item()
    return f"{acc:.3f} ± {math.sqrt(acc * (1 - acc) / len(rows)):.3f}"


def evaluate(label, train_f, held_f, train, held_out, seed) -> list[str]:
    groups = [e.chosen[0] for e in train]
    kinds = [subset(e) for e in train]
    held_kinds = [subset(e) for e in held_out]
    rows = {k: [i for i, s in enumerate(kinds) if s == k] for k in sorted(set(kinds))}
    held_rows = {k: [i for i, s in enumerate(held_kinds) if s == k] for k in rows}
    held_diff = held_f["chosen"] - held_f["rejected"]
    lines = []
    w_all, info = probe(train_f, list(range(len(train))), seed, groups)
    lines.append((f"{label}: both subsets, one probe (the recipe's)",
                  {k: accuracy(held_diff @ w_all, r) for k, r in held_rows.items()}, info))
    per_subset = {}
    for k, r in rows.items():
        per_subset[k], info = probe(train_f, r, seed, groups)
        lines.append((f"{label}: {k} only",
                      {j: accuracy(held_diff @ per_subset[k], hr) for j, hr in held_rows.items()},
                      info))
    labels = torch.tensor([float(k == "harmless-base") for k in kinds])
    w_gate, gate_info = gate(train_f, labels, seed, groups)
    def reward(x):  # the gated reward of each text: its own gate weighs the two probes
        p = torch.sigmoid(with_constant(x) @ w_gate)
        return p * (x @ per_subset["harmless-base"]) + (1 - p) * (x @ per_subset["helpful-base"])

    p = torch.sigmoid(with_constant(held_f["chosen"]) @ w_gate)
    truth = torch.tensor([float(k == "harmless-base") for k in held_kinds])
    gate_acc = ((p > 0.5).float() == truth).float().mean().item()
    gated = reward(held_f["chosen"]) - reward(held_f["rejected"])
    lines.append((f"{label}: gated (gate accuracy {gate_acc:.3f} on held-out texts)",
                  {k: accuracy(gated, r) for k, r in held_rows.items()}, gate_info))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the cached features")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cfg = recipe_config("hh-preference", str(out / "unused"))
    train, held_out, dropped = split_examples(cfg)
    print(f"{len(train)} training pairs, {len(held_out)} held out, {dropped} invalid dropped",
          flush=True)
    train_f = backbone_features(cfg, train, out, "train")
    held_f = backbone_features(cfg, held_out, out, "held_out")
    bow_train, bow_held = bag_of_words(train, held_out)
    results = (evaluate("backbone", train_f, held_f, train, held_out, cfg.seed)
               + evaluate("bag of words", bow_train, bow_held, train, held_out, cfg.seed))
    print("| probe | harmless-base | helpful-base | probe fit |\n|---|---|---|---|")
    for name, accs, info in results:
        print(f"| {name} | {accs['harmless-base']} | {accs['helpful-base']} | "
              f"{json.dumps(info)} |")
    print(f"{time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
