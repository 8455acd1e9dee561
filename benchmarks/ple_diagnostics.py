"""What a PLE update moves (issue 14, item 5): a PLE run of `ple train`'s flags that, at each
step, before the step's update, takes the gradient of every term of Eq. 6 apart on the pairs
that step generated, and after the update measures how their log-probabilities moved.

Per step, on the step's new pairs (with no dropout, so the run trains as it would without
the probe):
- the gradient norm of each term: L_rank (Eq. 3), the positive-weight and the negative-weight
  parts of L_weighted-sft (Eq. 4 with Eq. 5's w' = -w: one response pushed up, one down), the
  SFT anchor (not the paper's); and, not trained on, Eq. 3 without its length normalisation;
- each trained term's share of the step's gradient: its projection on the sum,
  <g_term, g> / |g|^2 (the shares add up to 1), and its cosine with the sum;
- per branch, the length-normalised log-probs of y and y' and their margin before and after
  the update (the update covers every replayed pair; with a replay window of 1 those are
  the new pairs).

    python benchmarks/ple_diagnostics.py --model tiny --max-steps 2 --output-dir /tmp/d
    python benchmarks/ple_diagnostics.py --config CONFIG.yaml --output-dir runs/diag \
        --append-markdown docs/results/imdb/diagnostics.md

Writes OUTPUT_DIR/diagnostics.jsonl (one row per step) beside the run's usual files and
prints a table of the means over steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchlib import append_markdown
from ple.trainer import mean_or_none as mean

TRAINED = ("rank", "wsft_positive", "wsft_negative", "anchor")
TERMS = TRAINED + ("rank_unnormalised",)
BRANCHES = ("rank", "weighted")


def term_losses(t: dict, anchor_coef: float, wsft_coef: float = 1.0,
                positive_only: bool = False) -> dict[str, torch.Tensor]:
    """The terms of Eq. 6 as ple_loss reduces them (sums over the pairs / number of pairs),
    with L_weighted-sft split by the sign of each response's weight (scaled by wsft_coef;
    wsft_positive_only trains no negative part), and Eq. 3 on summed instead of
    length-normalised log-probs."""
    n = t["is_rank"].numel()
    rank, weighted = t["is_rank"], ~t["is_rank"]
    pairs = lambda x: torch.stack([x[:n], x[n:]], dim=1)  # noqa: E731  [pairs, (y, y')]
    logp = pairs(t["logp_wsft"])  # summed, unless wsft_length_norm
    wsft_pos = -(t["weights"].clamp(min=0) * logp).sum(1)
    wsft_neg = -(t["weights"].clamp(max=0) * logp).sum(1)
    summed = pairs(t["logp_sum"])
    unnormalised = -(summed[:, 1] - summed[:, 0])
    return {"rank": t["rank"][rank].sum() / n,
            "wsft_positive": wsft_coef * wsft_pos[weighted].sum() / n,
            "wsft_negative": (torch.zeros(()) if positive_only
                              else wsft_coef * wsft_neg[weighted].sum() / n),
            "anchor": anchor_coef * t["anchor"].mean(),
            "rank_unnormalised": unnormalised[rank].sum() / n}


def flat_grad(loss: torch.Tensor, params: list) -> torch.Tensor:
    if not loss.requires_grad:  # a term with no pair this step
        return torch.zeros(sum(p.numel() for p in params))
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, params)])


def gradient_parts(t: dict, anchor_coef: float, params: list, wsft_coef: float = 1.0,
                   positive_only: bool = False) -> dict:
    """Norm of each term's gradient; share and cosine of each trained term in their sum."""
    grads = {k: flat_grad(v, params)
             for k, v in term_losses(t, anchor_coef, wsft_coef, positive_only).items()}
    total = sum(grads[k] for k in TRAINED)
    total_sq = float(total @ total)
    row = {"grad_norm_total": total_sq ** 0.5}
    for k, g in grads.items():
        row[f"grad_norm_{k}"] = float(g.norm())
        if k in TRAINED:
            row[f"share_{k}"] = float(g @ total) / total_sq if total_sq else None
            row[f"cos_{k}"] = float(g @ total) / (float(g.norm()) * total_sq ** 0.5) \
                if float(g.norm()) and total_sq else None
    return row


def by_branch(t: dict) -> dict[str, dict[str, list[float]]]:
    """Length-normalised log-probs of y and y' per branch."""
    n = t["is_rank"].numel()
    norm = t["logp_norm"].detach().tolist()
    out = {b: {"y": [], "y_prompt": []} for b in BRANCHES}
    for i, ranked in enumerate(t["is_rank"].tolist()):
        branch = out["rank" if ranked else "weighted"]
        branch["y"].append(norm[i])
        branch["y_prompt"].append(norm[n + i])
    return out


def movement(before: dict, after: dict) -> dict:
    """Per branch: the margin before and after the update, and how far y and y' moved."""
    row = {}
    for b in BRANCHES:
        x, z = before[b], after[b]
        row[f"n_{b}"] = len(x["y"])
        margin = [p - y for y, p in zip(x["y"], x["y_prompt"])]
        margin_after = [p - y for y, p in zip(z["y"], z["y_prompt"])]
        row[f"margin_{b}_before"], row[f"margin_{b}_after"] = mean(margin), mean(margin_after)
        row[f"delta_y_{b}"] = mean([a - c for a, c in zip(z["y"], x["y"])])
        row[f"delta_y_prompt_{b}"] = mean([a - c for a, c in zip(z["y_prompt"], x["y_prompt"])])
    return row


def probe_trainer(cfg):
    """A PLETrainer of `cfg` whose updates are probed; rows collect in `.diagnostics`."""
    from ple.models import paper_lora
    from ple.rewards import load_reward
    from ple.trainer import PLETrainer

    class Probed(PLETrainer):
        def _setup(self):
            super()._setup()
            self.diagnostics: list[dict] = []

        def _terms(self, pairs, tau, with_grad: bool) -> dict:
            self.model.eval()  # no dropout: the probe draws nothing from the random streams
            with torch.set_grad_enabled(with_grad):
                terms = self._pair_terms(pairs, tau)
            self.model.train()
            return terms

        def _rollout(self, step, queries):
            # Before the step's update: the gradient of each term on the step's new pairs.
            items, row = super()._rollout(step, queries)
            self._new = [p for p in self.buffer.pairs if p.step == step]
            params = [p for p in self.model.parameters() if p.requires_grad]
            t = self._terms(self._new, self.tau, with_grad=True)
            self._probe = {"step": step, "tau": self.tau,
                           **gradient_parts(t, self.args.sft_anchor, params,
                                            self.args.wsft_coef, self.args.wsft_positive_only)}
            self._before = by_branch(t)
            return items, row

        def _finish_row(self, row, terms):
            # After the step's update: how far it moved the new pairs' log-probs.
            probe = {**self._probe, **movement(
                self._before, by_branch(self._terms(self._new, self.tau, with_grad=False)))}
            self.diagnostics.append(probe)
            with open(Path(self.args.output_dir) / "diagnostics.jsonl", "a") as f:
                f.write(json.dumps(probe) + "\n")  # row by row: a stopped probe keeps its steps
            return super()._finish_row(row, terms)

    reward = load_reward(cfg.reward, cfg.task, cfg.reward_label)
    peft = paper_lora(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) if cfg.use_lora else None
    return Probed(model=cfg.model, args=cfg, reward_funcs=reward, peft_config=peft)


def summary(rows: list[dict]) -> dict:
    """The mean over steps of every number (steps without it left out)."""
    keys = [k for k in rows[0] if k not in ("step", "tau")]
    return {k: mean([r[k] for r in rows if r.get(k) is not None]) for k in keys}


def _f(value, digits=3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def report(rows: list[dict], cfg) -> list[str]:
    s = summary(rows)
    setting = (f"PLE on `{cfg.model}`, task {cfg.task}, reward `{cfg.reward}`, {len(rows)} "
               f"steps of {cfg.batch_size} queries, lr {cfg.learning_rate:g}, τ0 {cfg.tau0:g}, "
               f"SFT anchor {cfg.sft_anchor:g}, replay window {cfg.replay_window}, "
               f"{cfg.max_new_tokens} new tokens; means over steps, on each step's new pairs.")
    if cfg.wsft_length_norm:
        setting += " Eq. 4 length-normalised (wsft_length_norm)."
    lines = [setting, "",
             "| term of Eq. 6 | gradient norm | share of the gradient | cosine with it |",
             "|---|---|---|---|"]
    names = {"rank": "L_rank (Eq. 3)", "wsft_positive": "L_wsft, positive weights (Eq. 4)",
             "wsft_negative": "L_wsft, negative weights (Eq. 4)",
             "anchor": "SFT anchor (not the paper's)",
             "rank_unnormalised": "L_rank without length normalisation (not trained)"}
    for k in TERMS:
        lines.append(f"| {names[k]} | {s[f'grad_norm_{k}']:.4f} | "
                     f"{_f(s.get(f'share_{k}'), 2)} | {_f(s.get(f'cos_{k}'), 2)} |")
    lines.append(f"| all trained terms | {s['grad_norm_total']:.4f} | | |")
    header = ("| branch | pairs a step | margin before | margin after | Δ log-prob y "
              "| Δ log-prob y' |")
    lines += ["", header, "|---|---|---|---|---|---|"]
    for b in BRANCHES:
        lines.append(f"| {b} | {s[f'n_{b}']:.1f} | {_f(s[f'margin_{b}_before'])} | "
                     f"{_f(s[f'margin_{b}_after'])} | {_f(s[f'delta_y_{b}'], 4)} | "
                     f"{_f(s[f'delta_y_prompt_{b}'], 4)} |")
    lines += ["", "Log-probs are length-normalised (per token). Margin: y' minus y."]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--out", help="write every number to this JSON file")
    own.add_argument("--append-markdown", help="append a section to this file")
    mine, rest = own.parse_known_args(argv)
    from ple.cli import parse_train
    from ple.config import PLEConfig
    from ple.training import prepare_output_dir

    cfg, command = parse_train(["--method", "ple", *rest])
    assert isinstance(cfg, PLEConfig)
    prepare_output_dir(cfg.output_dir, command.overwrite)
    (Path(cfg.output_dir) / "diagnostics.jsonl").unlink(missing_ok=True)
    trainer = probe_trainer(cfg)
    trainer.train()
    rows = trainer.diagnostics
    lines = report(rows, cfg)
    print("\n".join(lines))
    if mine.out:
        Path(mine.out).write_text(json.dumps({"rows": rows, "summary": summary(rows)}, indent=2))
    if mine.append_markdown:
        append_markdown(mine.append_markdown, "What a PLE update moves", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
