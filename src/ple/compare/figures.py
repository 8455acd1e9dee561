"""The report's figures, each in its section: win rates (Figure 2), reward curves
(Figure 3) and level-set purity.
"""

from __future__ import annotations

import io
import statistics

# Figure, not pyplot: files only, no display, and no global backend chosen for the user.
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from ple.compare.render import Figure, Section, Table
from ple.compare.results import (Runs, cell, mean_by_step, sentence, spread_words,
                                 training_reward)


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes, laid out tight."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def winrate_section(runs: Runs) -> Section:
    cfg = runs.cfg
    if not cfg.winrate:
        return Section("Win rates (Figure 2)", ["No judge configured (`winrate` in the "
                                                "compare config), so no win rates."])
    rows, rates = [], []
    for other in cfg.opponents():
        reports = [runs.winrates[other, seed] for seed in cfg.seeds_of(other)]
        shares = [[100 * r[f"{k}_rate"] for r in reports] for k in ("win", "tie", "lose")]
        rates.append([statistics.mean(s) for s in shares])
        rows.append([f"{cfg.ours} vs {other}", *(cell(s, 0) for s in shares),
                     cell([r["n"] for r in reports], 0)])
    fig = MplFigure(figsize=(7, 0.6 * len(rows) + 1.2))
    ax = fig.subplots()
    labels = [r[0] for r in rows]
    left = [0.0] * len(rows)
    for i, (outcome, color) in enumerate((("win", "#4c9a5b"), ("tie", "#b8b8b8"),
                                          ("lose", "#c4554d"))):
        widths = [r[i] for r in rates]
        bars = ax.barh(labels, widths, left=left, color=color, label=outcome)
        ax.bar_label(bars, labels=[f"{w:.0f}%" if w >= 6 else "" for w in widths],
                     label_type="center", fontsize="small")
        left = [a + w for a, w in zip(left, widths)]
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of pairs" + (" (mean over seeds)" if len(cfg.seeds) > 1 else ""))
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize="small")
    example = runs.winrates[cfg.opponents()[0], cfg.seeds[0]]
    return Section("Win rates (Figure 2)", [
        f"Judge: {example['judge']}. {sentence(example['rule'])} (model A: {cfg.ours}). "
        f"The responses are the evaluation's, on the same test queries. "
        f"{sentence(spread_words(cfg))}.",
        Table("win / tie / lose (%) of ours", ["pair", "win %", "tie %", "lose %",
                                               "pairs per seed"], rows),
        Figure("winrate.png", f"Win / tie / lose of {cfg.ours} against each other method "
               f"and the base model.", png_bytes(fig))])


def reward_series(names: list[str], seeds: list[int], metrics: dict, ours: str) -> dict:
    """What the reward figure draws, per run that samples while training: `training` (the
    mean reward of each step's sampled responses), for `ours` `principle` (of its
    principle-guided responses y') where logged, and `held-out` (the periodic evaluations,
    eval_steps) where logged; each a list of (generated responses so far, reward), both
    means over the seeds that run has. `metrics[name, seed]` is that run's metrics rows."""
    series = {}
    for name in names:
        seed_rows = [metrics[name, seed] for seed in seeds if (name, seed) in metrics]
        if not any(training_reward(r) is not None for rows in seed_rows for r in rows):
            continue
        steps, xs = mean_by_step(seed_rows, lambda r: r.get("generated_responses"))
        x_of = dict(zip(steps, xs))

        def points(get):
            steps, ys = mean_by_step(seed_rows, get)
            return [(x_of[s], y) for s, y in zip(steps, ys) if y == y]  # NaN: not logged

        series[name] = {"training": points(training_reward)}
        if name == ours:
            series[name]["principle"] = points(lambda r: r.get("reward_prompt_mean"))
        series[name]["held-out"] = points(lambda r: r.get("eval_reward_mean"))
    return series


def run_style(i: int) -> dict:
    """The i-th run's line colour and dash: matplotlib's ten colours, then the same ten
    dashed, then dash-dotted, so that a grid of more than ten runs draws no two alike."""
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", "-.")[i // 10 % 3]}


def curves_section(runs: Runs) -> Section:
    cfg = runs.cfg
    trained = runs.names[1:]
    series = reward_series(trained, cfg.seeds, runs.metrics, cfg.ours)
    # Held-out reward against the budget (the paper's sample-efficiency claim) beside the
    # noisier training batches; one legend entry per run, in its own panel, so that it
    # hides no curve however many runs a grid has.
    fig = MplFigure(figsize=(12, 4.5))
    held, batch, key = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.45]})
    for i, name in enumerate(trained):
        if name not in series:
            continue
        style, run = run_style(i), series[name]
        if run["held-out"]:
            held.plot(*zip(*run["held-out"]), marker="o", label=name, **style)
        batch.plot(*zip(*run["training"]), linewidth=1, label=name, **style)
        if run.get("principle"):
            batch.plot(*zip(*run["principle"]), color=style["color"], linestyle=":",
                       linewidth=1, label=f"{name}, y' (principle prompt)")
    for ax, title in ((held, "held-out reward (eval_steps)"),
                      (batch, "reward of each training batch")):
        ax.set_title(title)
        ax.set_xlabel("generated responses (training budget)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    held.set_ylabel("mean reward")
    if not any(run["held-out"] for run in series.values()):
        held.text(0.5, 0.5, "no periodic held-out evaluation logged\n(eval_steps)",
                  ha="center", va="center", transform=held.transAxes)
    key.axis("off")
    key.legend(*batch.get_legend_handles_labels(), loc="center left", fontsize="small")
    caption = ("Left: mean reward of the held-out queries at each periodic evaluation "
               "(eval_steps), against the responses generated so far; right: mean reward of "
               "each step's sampled responses (dotted: ours with the principle prompt, y')"
               + (", means over seeds" if len(cfg.seeds) > 1 else "") + ".")
    without = [name for name in trained if name not in series]
    if without:
        caption += f" No training reward (they sample nothing while training): " \
                   f"{', '.join(without)}."
    return Section("Reward curves (Figure 3)", [
        Figure("reward_curves.png", caption, png_bytes(fig))])


def purity_section(runs: Runs) -> Section | None:
    cfg = runs.cfg
    ple_runs = [n for n in runs.names[1:] if runs.metrics[n, cfg.seeds[0]]
                and "purity" in runs.metrics[n, cfg.seeds[0]][0]]
    if not ple_runs:
        return None
    fig = MplFigure(figsize=(4.5 * len(ple_runs), 3.8))
    axes = fig.subplots(1, len(ple_runs), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], ple_runs):
        seed_rows = [runs.metrics[name, seed] for seed in cfg.seeds_of(name)]
        for margin in seed_rows[0][0]["purity"]:
            steps, shares = mean_by_step(seed_rows, lambda r, e=margin: r["purity"][e])
            ax.plot(steps, shares, marker=".", label=f"e = {margin}")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("share of pairs with s' - s >= e\nwhere logp(y') > logp(y)")
    axes[0][-1].legend(fontsize="small", loc="lower right")
    return Section("Level-set purity", [Figure(
        "purity.png", "Level-set purity (Definition 5.1) per step, one curve per margin e"
        + (", mean over seeds" if len(cfg.seeds) > 1 else "") + ": of the pairs trained "
        "with s' - s >= e, the share whose length-normalised log-prob of y' exceeds y's. A "
        "gap: no pair reached the margin that step.", png_bytes(fig))])
