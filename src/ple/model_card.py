"""The model card (README.md) saved with every trained adapter or model: what trained it,
on what, and what it measured, so a folder that travels on its own still says so."""

from __future__ import annotations

from pathlib import Path

import yaml

from ple.models import hub_id

# The config keys a reader of the card needs first; config.yaml beside the run has all.
SHOWN = ("method", "task", "model", "reward", "data", "max_steps", "batch_size",
         "learning_rate", "tau0", "alpha", "rank_loss", "ablation", "sft_anchor",
         "replay_window", "raft_k", "use_lora", "lora_r", "lora_alpha", "max_new_tokens",
         "seed")


def _evaluation(summary: dict) -> list[str]:
    lines = []
    for when in ("before", "after"):
        ev = summary.get(f"eval_{when}")
        if ev:
            lines.append(f"| {when} training | {ev['reward_mean']:+.3f} ± {ev['reward_se']:.3f} "
                         f"| {ev['n']} | {ev['base_perplexity']:.2f} | {ev['distinct_2']:.3f} |")
    if not lines:
        return ["No held-out evaluation was run (eval_queries: 0)."]
    return ["Plain responses (no principle) to the held-out queries:", "",
            "| | reward ± SE | n | perplexity under the base model | distinct-2 |",
            "|---|---|---|---|---|", *lines]


def write_model_card(folder: Path, args, metrics: list[dict], summary: dict) -> None:
    """README.md in `folder` (replacing PEFT's, which names a local path as base_model).
    base_model is the Hub id of the model trained on, or absent where it has none (`tiny`,
    a .gguf file, a local directory whose config names none): the Hub links a card's
    base_model to that model's page, so a name only ple knows or a path here is wrong."""
    config = args.to_dict()
    base = hub_id(config["model"])
    front = {"library_name": "peft" if config["use_lora"] else "transformers",
             **({"base_model": base} if base else {}),
             "tags": ["ple", config["method"], "alignment"]}
    on = f"`{config['model']}`" + (f" ({base})" if base and base != config["model"] else "")
    last = metrics[-1] if metrics else {}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {config['method'].upper()} on {config['task']}", "",
             f"Trained with [ple](https://pypi.org/project/ple/) "
             f"({'a PEFT adapter' if config['use_lora'] else 'every weight'} on "
             f"{on}), reward `{config['reward']}`, "
             f"{summary.get('steps', len(metrics))} steps.", "",
             "## Settings", "", "| key | value |", "|---|---|",
             *[f"| {k} | {config[k]!r} |" for k in SHOWN if k in config], "",
             "The whole configuration is config.yaml in the run's directory.", "",
             "## Evaluation", "", *_evaluation(summary), ""]
    if "reward_mean" in last:
        lines += [f"Training reward of the last step: {last['reward_mean']:+.3f} "
                  f"(generated responses so far: {last.get('generated_responses')}).", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")
