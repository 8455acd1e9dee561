"""Why `hh-preference` is at chance on harmless-base, and what reaches the targets (issue 16).

The built-in HH reward's recipe (the same split, tokenizer, 128 tokens with the end kept, and
backbone as `ple reward train`): the frozen default model's features of every training and
held-out pair are computed once and saved under --out, then linear probes (Bradley–Terry on
feature differences, `ple.rewards.training.probe.fit_probe`) are fitted on

- both subsets at once (what the recipe's probe does),
- each subset alone, scored on that subset's held-out pairs,
- each subset alone, combined by gates: logistic regressions that tell from the same
  features which subset a text came from, weighing the two probes (so the combined reward
  is still a function of the one forward pass a reward makes): what the built-in
  `hh-preference` now is (ple.rewards.gated),

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
from ple.rewards.gated import fit_bradley_terry, fit_gate, gated_reward
from ple.rewards.training.base_model import (encode, head_name, load_base_model,
                                             load_base_tokenizer, pooled_features)
from ple.rewards.training.data import split_examples


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
    """A Bradley–Terry probe on the pairs `rows`."""
    w, info = fit_bradley_terry(features["chosen"][rows].double(),
                                features["rejected"][rows].double(), seed,
                                [groups[i] for i in rows])
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
    # The built-in reward's combination (ple.rewards.gated): a gate per subset, each
    # weighing its probe.
    gates = [fit_gate(train_f["chosen"].double(), torch.tensor([s == k for s in kinds]), seed,
                      groups) for k in rows]
    weight = torch.stack([per_subset[k] for k in rows] + [g.float() for g, _, _ in gates])
    bias = [b for _, b, _ in gates]

    def reward(x):
        return gated_reward(x @ weight.T, bias)

    pick = (held_f["chosen"] @ weight[len(rows):].T + torch.tensor(bias)).argmax(-1)
    truth = torch.tensor([sorted(rows).index(k) for k in held_kinds])
    gate_acc = (pick == truth).float().mean().item()
    gated = reward(held_f["chosen"]) - reward(held_f["rejected"])
    lines.append((f"{label}: gated (gate accuracy {gate_acc:.3f} on held-out texts)",
                  {k: accuracy(gated, r) for k, r in held_rows.items()},
                  {k: info for k, (_, _, info) in zip(rows, gates)}))
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
