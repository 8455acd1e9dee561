"""The run's figures: the paper's Figure 3 (reward with and without the principle prompt per
step, and tau), the loss of offline methods, and level-set purity per step."""

from __future__ import annotations

# Figure, not pyplot: files only, no display, and no global backend chosen for the user.
from matplotlib.figure import Figure


def plot_reward_curves(metrics: list[dict], path) -> None:
    """Mean reward per step; with the principle's curve and tau when the method has them."""
    steps = [m["step"] for m in metrics]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    if metrics and "reward_prompt_mean" in metrics[0]:
        ax.plot(steps, [m["reward_prompt_mean"] for m in metrics],
                label="with principle (y')")
    ax.plot(steps, [m["reward_mean"] for m in metrics], label="without principle (y)")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    lines = ax.get_lines()
    if metrics and "tau" in metrics[0]:
        tau_ax = ax.twinx()
        tau_ax.plot(steps, [m["tau"] for m in metrics], color="grey", linestyle="--",
                    label="tau")
        tau_ax.set_ylabel("threshold tau")
        lines = lines + tau_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right")
    ax.set_title("Reward curves")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_loss_curve(rows: list[dict], path) -> None:
    """Training loss per step, for methods that sample nothing while training (SFT, DPO)."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_purity(metrics: list[dict], path) -> None:
    """Level-set purity (Definition 5.1) per step, one curve per margin e, beside tau: as tau
    falls, PLE should make the level sets of small margins pure too (Lemma 5.2). Steps where
    no pair reached a margin leave a gap in its curve."""
    steps = [m["step"] for m in metrics]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for e in metrics[0]["purity"]:
        shares = [m["purity"][e] for m in metrics]
        ax.plot(steps, [float("nan") if s is None else s for s in shares], marker=".",
                label=f"e = {e}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("share of pairs with s' - s >= e\nwhere logp(y') > logp(y)")
    tau_ax = ax.twinx()
    tau_ax.plot(steps, [m["tau"] for m in metrics], color="grey", linestyle="--", label="tau")
    tau_ax.set_ylabel("threshold tau")
    lines = ax.get_lines() + tau_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize="small")
    ax.set_title("Level-set purity (Definition 5.1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
