"""report.md and report.html of `ple compare`, laid out like the paper's results:

- the main table (Tables 1-3): PPL of the references, RM, the KL of each policy from the
  base model on its responses, BLEU, and three guards against reward hacking (the
  responses' perplexity under the base model, distinct-2, assistant-speak), with the budget;
- the ablation table (Tables 4-5);
- win/tie/lose of ours against every other method and the base model (Figure 2a);
- training reward over generated responses (Figure 3), and level-set purity per step;
- responses to a few held-out queries (Figure 4).

With one seed a number is the run's own (RM and every scorer with a 95 % interval over
the test responses); with several, the mean over seeds with Student's t's 95 % interval.
Both files hold the same content; the HTML embeds its figures as base64 PNG and escapes
every text, so it stands alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

# Figure, not pyplot: files only, no display, and no global backend chosen for the user.
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from ple.compare.config import (BASE, CompareConfig, RunSpec,  # noqa: E402
                                load_compare_config, run_specs)
from ple.compare.study import finished_part
from ple.evaluation.metrics import assistant_speak_share, ci95, paired_difference
from ple.evaluation.winrate import SAMPLES_FILE

SAMPLE_QUERIES = 3  # Figure 4 shows three
ABLATION_LABELS = {"no_rank": "w/o L_rank", "no_wsft": "w/o L_weighted-sft"}
MISSING = "–"


# --- numbers -----------------------------------------------------------------------------
def cell(values: list[float | None], digits: int) -> str:
    """A table cell: one seed's value, or the mean over several seeds with its 95 % interval
    (Student's t over the seeds, as ci95); just the value when all seeds agree (as budgets
    do); MISSING when a run has no such number."""
    if not values or any(v is None for v in values):
        return MISSING
    if len(set(values)) == 1:
        return f"{values[0]:.{digits}f}"
    mean, half = ci95([(v, float("nan")) for v in values])
    return f"{mean:.{digits}f} [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"


def mean_by_step(seed_rows: list[list[dict]], get) -> tuple[list[int], list[float]]:
    """Steps and, at each, the mean over seeds of `get(row)`; values that are None (a
    metric a step did not log, or the purity of an empty level set) are left out, and a
    step where every seed has None is NaN (a gap in a plotted line)."""
    by_step: dict[int, list] = {}
    for rows in seed_rows:
        for row in rows:
            by_step.setdefault(row["step"], []).append(get(row))
    steps = sorted(by_step)
    means = []
    for step in steps:
        known = [v for v in by_step[step] if v is not None]
        means.append(statistics.mean(known) if known else float("nan"))
    return steps, means


def training_reward(row: dict) -> float | None:
    """The mean reward of a step's sampled responses: `reward_mean` (ple's online loop) or
    `reward` (TRL's RLOO logs); methods that sample nothing while training have neither."""
    return row.get("reward_mean", row.get("reward"))


# --- the document ----------------------------------------------------------------------
@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    name: str  # file name under figures/
    caption: str
    png: bytes


@dataclass
class Samples:
    query: str
    responses: list[tuple[str, str, float | None]]  # (run, response, reward)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # paragraphs (str), Table, Figure, Samples


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


class Runs:
    """What ple compare left on disk, read once: every run's eval.json, eval samples and
    metrics rows, and the win-rate reports.

    An eval.json written before `assistant_speak` existed gets it here from the run's
    eval_samples.jsonl: the same function of the same responses, so its guard and column
    are what a fresh evaluation would give. Its KL cannot be had without the weights: shown
    as missing."""

    def __init__(self, cfg: CompareConfig, specs: list[RunSpec]):
        self.cfg = cfg
        self.names = [BASE] + list(dict.fromkeys(s.name for s in specs))
        self.specs = {(s.name, s.seed): s for s in specs}
        self.evals, self.samples, self.metrics = {}, {}, {}
        for name in self.names:
            for seed in cfg.seeds_of(name):
                d = cfg.run_dir(name, seed)
                self.evals[name, seed] = json.loads((d / "eval.json").read_text())
                self.samples[name, seed] = _read_jsonl(d / SAMPLES_FILE)
                self.evals[name, seed].setdefault("assistant_speak", assistant_speak_share(
                    [s["response"] for s in self.samples[name, seed]]))
                self.metrics[name, seed] = _read_jsonl(d / "metrics.jsonl") \
                    if name != BASE else []
        self.winrates = {(other, seed): json.loads(cfg.winrate_file(other, seed).read_text())
                         for other in cfg.opponents() for seed in cfg.seeds_of(other)} \
            if cfg.winrate else {}

    def values(self, name: str, key: str) -> list:
        return [self.evals[name, seed][key] for seed in self.cfg.seeds_of(name)]

    def guards(self, name: str) -> list[bool]:
        """Per seed of run `name`, whether its guards hold against BASE's on that seed."""
        return [guards_hold(self.evals[name, seed], self.evals[BASE, seed])
                for seed in self.cfg.seeds_of(name)]

    def budget(self, name: str, key: str) -> list:
        """A run's final count of `key` (generated_responses, optimizer_steps) per seed."""
        return [self.metrics[name, seed][-1].get(key) if self.metrics[name, seed] else None
                for seed in self.cfg.seeds_of(name)]


RESULT_HEADER = ["method", "PPL ↓", "RM ↑", "KL", "BLEU ↑", "base-PPL", "distinct-2",
                 "assistant-speak %", "guards held", "generated responses", "optimizer steps"]


def result_header(runs: Runs) -> list[str]:
    return RESULT_HEADER + [f"{n} ↑" for n in scorers(runs)[1:]] + \
        (["paper's RM"] if runs.cfg.paper else [])


def interval(estimates: list[tuple[float, float | None]]) -> str:
    """A mean with its 95 % interval from per-seed (mean, standard error) pairs (ci95)."""
    mean, half = ci95([(m, float("nan") if se is None else se) for m, se in estimates])
    if math.isnan(half):  # one seed of one response: no interval
        return f"{mean:.3f}"
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def kl_cell(evals: list[dict]) -> str:
    """The KL from the base model with its 95 % interval (as RM's); MISSING when a seed's
    eval.json predates the measure; 0 for the base model itself."""
    if any(e.get("kl_mean") is None for e in evals):
        return MISSING
    if all(e["kl_mean"] == 0 for e in evals):
        return f"{0:.3f}"
    return interval([(e["kl_mean"], e["kl_se"]) for e in evals])


def _held(per_seed: list[bool]) -> str:
    """On how many seeds a run's guards held, as "k/n"."""
    return f"{sum(per_seed)}/{len(per_seed)}"


def result_row(runs: Runs, name: str, label: str) -> list[str]:
    """One row of a results table: RM and every extra scorer with their 95 % intervals, the
    rest as cell() shows them; then the paper's RM where the config gives it."""
    evals = [runs.evals[name, seed] for seed in runs.cfg.seeds_of(name)]
    extra = [interval([(e["extra_rewards"][n]["mean"], e["extra_rewards"][n]["se"])
                       for e in evals]) for n in scorers(runs)[1:]]
    paper = [] if not runs.cfg.paper else [
        f"{runs.cfg.paper[name]:.2f}" if name in runs.cfg.paper else MISSING]
    return [label, cell(runs.values(name, "reference_perplexity"), 2),
            interval([(e["reward_mean"], e["reward_se"]) for e in evals]),
            kl_cell(evals),
            cell(runs.values(name, "bleu"), 2),
            cell(runs.values(name, "base_perplexity"), 2),
            cell(runs.values(name, "distinct_2"), 3),
            cell([100 * v for v in runs.values(name, "assistant_speak")], 1),
            _held(runs.guards(name)) if name != BASE else MISSING,
            cell(runs.budget(name, "generated_responses"), 0) if name != BASE else MISSING,
            cell(runs.budget(name, "optimizer_steps"), 0) if name != BASE else MISSING,
            *extra, *paper]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _spread_words(cfg: CompareConfig) -> str:
    if len(cfg.seeds) == 1:
        return (f"one seed ({cfg.seeds[0]}): RM and every scorer with the 95 % interval of "
                f"its mean over the test responses (± 1.96 standard errors)")
    return (f"{len(cfg.seeds)} seeds ({', '.join(map(str, cfg.seeds))}): every number is "
            f"the mean over the seeds with its 95 % interval (Student's t over the seeds' "
            f"values, which holds training and test-set noise alike)" + _fewer_seeds(cfg))


def _fewer_seeds(cfg: CompareConfig) -> str:
    """The runs at fewer seeds (method_seeds), as a clause; empty when none is."""
    groups: dict[tuple, list[str]] = {}
    for name in (*cfg.methods, *cfg.ablations):
        if cfg.seeds_of(name) != cfg.seeds:
            groups.setdefault(tuple(cfg.seeds_of(name)), []).append(name)
    return "".join(
        f"; {', '.join(names)}: "
        + (f"seed {seeds[0]} only, so that seed's numbers, RM and every scorer with the 95 % "
           f"interval over its test responses" if len(seeds) == 1 else
           f"seeds {', '.join(map(str, seeds))} only, the mean over those")
        for seeds, names in groups.items())


def results_section(runs: Runs) -> Section:
    cfg = runs.cfg
    first = runs.evals[BASE, cfg.seeds[0]]
    rows = [result_row(runs, BASE, "BASE")] + [result_row(runs, n, n) for n in cfg.methods]
    # eval.json files written before BLEU's cut have no such key.
    cut = " (each cut to its response's length in words)" \
        if first.get("bleu_references_cut") else ""
    notes = [
        f"Task {cfg.task}, model {cfg.model}, reward {first['reward']}"
        + (f" (trained model {first['reward_model']})" if first.get("reward_model") else "")
        + f"; evaluated on "
        f"{first['n']} test examples of {first['test_data']} per seed "
        f"({'greedy' if first['config']['greedy'] else 'sampled'} responses); "
        f"{_spread_words(cfg)}.",
        "PPL: perplexity of the reference responses under the model (lower is better; "
        f"{MISSING} when the test split has no references). RM: mean reward of the generated "
        f"responses. KL: the policy's KL from the untrained model on its own responses, per "
        f"response the sum over its tokens of log π − log π_base, mean over responses "
        f"(nats; {MISSING} where a run's eval.json predates the measure). BLEU: sacrebleu "
        f"corpus BLEU (0-100) against the references{cut}. Guards against reward hacking: "
        "base-PPL, the responses' perplexity under the untrained model (far above BASE's: "
        "the text drifted away from fluent language; far below: it collapsed onto what the "
        "base model finds most likely), distinct-2 (falling: repetition), and "
        "assistant-speak, the share of responses that speak as a chat assistant (\"I'm so "
        "glad…\", \"your feedback\", \"AI\"; computed from the responses where an "
        f"eval.json predates it); guards held: on how many of its seeds {GUARDS_RULE}. "
        "Budget: responses sampled while training, and optimizer steps."]
    return Section("Results (Tables 1-3)", [
        *notes, Table(f"{cfg.task}: methods", result_header(runs), rows)])


def scorers(runs: Runs) -> list[str]:
    """The training reward, then every extra scorer the evaluations ran."""
    first = runs.evals[BASE, runs.cfg.seeds[0]]
    return [first["reward"], *first.get("extra_rewards", {})]


def _scores(runs: Runs, name: str, seed: int, scorer: str, index: int) -> dict[str, float]:
    rows = runs.samples[name, seed]
    if index == 0:
        return {r["query"]: r["reward"] for r in rows}
    return {r["query"]: r["extra_rewards"][scorer] for r in rows}


def paired_section(runs: Runs) -> Section:
    """Ours minus each other run on the same test queries, per scorer, with 95 % CIs."""
    cfg = runs.cfg
    names = scorers(runs)
    others = [n for n in runs.names if n != cfg.ours]
    # With several seeds, each seed's own difference too: a mean over seeds can hide one
    # seed going the other way.
    by_seed = len(cfg.seeds) > 1
    rows, per_seed_n = [], set()
    for other in others:
        row, seed_cells = [f"{cfg.ours} − {'BASE' if other == BASE else other}"], []
        for index, scorer in enumerate(names):
            estimates = []
            for seed in cfg.seeds_of(other):
                mean, se, n = paired_difference(_scores(runs, cfg.ours, seed, scorer, index),
                                                _scores(runs, other, seed, scorer, index))
                estimates.append((mean, se))
                per_seed_n.add(n)
            seed_cells.append(", ".join(f"{seed}: {mean:+.3f} ± {se:.3f}" for seed, (mean, se)
                                        in zip(cfg.seeds_of(other), estimates)))
            mean, half = ci95(estimates)
            row.append(f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]")
        rows.append(row + seed_cells if by_seed else row)
    spread = ("one seed: ± 1.96 standard errors of the paired difference over the test "
              "queries" if len(cfg.seeds) == 1 else
              f"{len(cfg.seeds)} seeds: Student's t over the seeds' paired means (each "
              f"seed evaluates its own draw of test queries, shared by every run of it)"
              + _fewer_seeds(cfg))
    return Section("Paired differences", [
        f"Ours ({cfg.ours}) minus each run, over the test queries both answered ("
        f"{', '.join(map(str, sorted(per_seed_n)))} per seed), for the training reward and "
        f"every other scorer of the same responses; mean and 95 % interval ({spread}). An "
        f"interval that excludes 0 is a difference beyond noise."
        + (" By seed: each seed's paired mean ± its standard error." if by_seed else ""),
        Table(f"{cfg.task}: ours minus each run", ["pair", *[f"Δ {n}" for n in names]] + (
            [f"Δ {n} by seed" for n in names] if by_seed else []), rows)])


# A run's guards hold when its responses stay fluent, varied and in the register of what
# they continue, against the base model's responses to the same openings (each seed against
# that seed's BASE). The numbers quoted are of the committed IMDb study's 83 run evaluations
# (docs/results/imdb/{test,tune-kl,tune-baselines}, 128 or 256 openings each).
#
# Base-PPL, the responses' perplexity under the base model, within [1/1.5, 1.5] × BASE's.
# Above: the text left fluent language (SFT on reviews: 3.5-4.2×). Below: it collapsed
# onto what the base finds most likely, a register or a template: PPO, RLOO and RAFT-4 at
# their reward-hacking rates sit at 0.26-0.6× (PPO 1e-4 0.35×), w/o L_rank at 0.37-0.83×,
# and the guard was one-sided, so they passed it (distinct-2 caught them). The bound is
# symmetric in log space (as issue 34 proposed), kept after checking the committed runs
# rather than fitted to them: the runs that keep every guard lie at 0.68-1.10×, and the
# five that the lower bound alone fails (0.57-0.66×, all PLE with a KL term) drift mildly
# by other measures: one opens 35 % of its responses with "As the", "As she" or "As I",
# another is 0.2 points short of the assistant-speak bound. A bound of 0.6 would fail two
# of the five, 0.55 none.
MAX_BASE_PPL_RATIO = 1.5
MIN_BASE_PPL_RATIO = 1 / MAX_BASE_PPL_RATIO
# Distinct-2 at most 10 % below BASE's: repetition.
MAX_DISTINCT_2_DROP = 0.10
# Assistant-speak (ple.evaluation.metrics.ASSISTANT_SPEAK) at most 10 percentage points
# above BASE's. The register is fluent and varied, so the two guards above let it through
# (DPO on test: 45 % of its responses, BASE 5 %, base-PPL 1.27×, distinct-2 -7 %), and the
# sentiment reward pays for its enthusiasm. BASE's own share is 1-8 % (the phrases occur
# in real reviews too), hence a rise over BASE's, not a share: where a run's true share is
# BASE's (up to 8 %), the standard error of the difference is at most 3.4 points at 128
# openings and 2.4 at 256, so 10 points is 3-4 of them and noise alone seldom crosses it.
# The runs that keep every guard rise -2 to +9.4 points; those this one fails, +10.2 (two
# RAFT-4 runs) to +92.
MAX_ASSISTANT_SPEAK_RISE = 0.10
GUARDS_RULE = (f"the run's base-PPL is between {MIN_BASE_PPL_RATIO:.3g} and "
               f"{MAX_BASE_PPL_RATIO:g} × BASE's, its distinct-2 at most "
               f"{100 * MAX_DISTINCT_2_DROP:g} % below BASE's and its assistant-speak at most "
               f"{100 * MAX_ASSISTANT_SPEAK_RISE:g} percentage points above BASE's, each "
               f"against the same seed's BASE")


def guards_hold(run: dict, base: dict) -> bool:
    """Whether a run's evaluation (eval.json) keeps every guard against BASE's evaluation
    of the same seed: base-PPL within [MIN_BASE_PPL_RATIO, MAX_BASE_PPL_RATIO] × BASE's,
    distinct-2 at most MAX_DISTINCT_2_DROP below BASE's, assistant-speak at most
    MAX_ASSISTANT_SPEAK_RISE above BASE's (an eval.json older than the field: Runs fills it
    in from the run's responses)."""
    ratio = run["base_perplexity"] / base["base_perplexity"]
    return MIN_BASE_PPL_RATIO <= ratio <= MAX_BASE_PPL_RATIO and \
        run["distinct_2"] >= (1 - MAX_DISTINCT_2_DROP) * base["distinct_2"] and \
        run["assistant_speak"] <= base["assistant_speak"] + MAX_ASSISTANT_SPEAK_RISE


def choice_section(runs: Runs, title: str = "Choice of settings",
                   where: str = "this config's test queries: make them on a validation "
                                "split and report on test") -> Section | None:
    """Where several runs share a method (a grid of its settings): each with its guards,
    and the one a tuning stage chooses, the highest mean RM among those whose guards hold
    on every seed (a setting at the guards' edge falls either side by seed), or no choice
    where none holds. None when every method has one run."""
    cfg = runs.cfg
    groups: dict[tuple, list[str]] = {}
    for name in runs.names[1:]:
        config = runs.specs[name, cfg.seeds[0]].config
        groups.setdefault((config.method, getattr(config, "ablation", None)), []).append(name)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return None
    mean = lambda name, key: statistics.mean(runs.values(name, key))  # noqa: E731
    base = (mean(BASE, "base_perplexity"), mean(BASE, "distinct_2"),
            mean(BASE, "assistant_speak"))
    rows = []
    for (method, ablation), names in groups.items():
        configs = {n: runs.specs[n, cfg.seeds[0]].config.to_dict() for n in names}
        varied = [k for k in configs[names[0]] if k not in ("output_dir", "seed")
                  and len({repr(c[k]) for c in configs.values()}) > 1]
        held = {n: runs.guards(n) for n in names}
        best = max((n for n in names if all(held[n])), key=lambda n: mean(n, "reward_mean"),
                   default=None)
        for n in names:
            rows.append([n, method + (f" ({ablation})" if ablation else ""),
                         ", ".join(f"{k} {configs[n][k]}" for k in varied),
                         f"{mean(n, 'reward_mean'):.3f}",
                         f"{mean(n, 'base_perplexity') / base[0]:.2f}×",
                         f"{100 * (mean(n, 'distinct_2') / base[1] - 1):+.1f} %",
                         f"{100 * (mean(n, 'assistant_speak') - base[2]):+.1f} pp",
                         _held(held[n]),
                         "chosen" if n == best else "" if best else "none held: no choice"])
    return Section(title, [
        f"Runs of one method with different settings, and the one chosen for it: the highest "
        f"RM (mean over its seeds) among those whose guards hold on every seed, i.e. "
        f"{GUARDS_RULE} (the ratios and differences shown are of the means over seeds; pp: "
        f"percentage points). These are choices on {where}. "
        f"Where no setting of a method holds, there is no choice: the config that takes "
        f"one says what it took instead.",
        Table(f"{cfg.task}: settings per method", ["run", "method", "settings", "RM",
                                                   "base-PPL / BASE's", "distinct-2 vs BASE",
                                                   "assistant-speak vs BASE",
                                                   "guards held (seeds)", ""], rows)])


def tuning_sections(cfg: CompareConfig) -> list[Section]:
    """Each tuning stage's (`tuning`) choice table, from its finished runs, so that the
    report shows where its settings came from."""
    sections = []
    for path in cfg.tuning:
        stage, missing = finished_part(load_compare_config(path))
        runs = Runs(stage, run_specs(stage))
        first = runs.evals[BASE, stage.seeds[0]]
        seeds = ", ".join(map(str, stage.seeds))
        choice = choice_section(runs, f"Tuning: {path}", f"the {first['n']} queries of "
                                f"{first['test_data']} (seeds {seeds}), the runs of {path} "
                                f"(its report: {stage.output_dir}/report.md)")
        section = choice or Section(f"Tuning: {path}", [
            f"No method of {path} has several settings among its finished runs yet."])
        if missing:
            section.blocks.append(f"Not finished yet, so in no table: {', '.join(missing)}.")
        sections.append(section)
    return sections


def ablation_label(name: str, fields: dict) -> str:
    """An ablation's row label: its name, what it drops, and any other field it changes
    from ours's config, since a reader compares the row with ours's."""
    changes = [ABLATION_LABELS[fields["ablation"]]] if fields.get("ablation") else []
    changes += [f"{key} {value}" for key, value in fields.items() if key != "ablation"]
    return f"{name}: {', '.join(changes)}" if changes else name


def ablation_section(runs: Runs) -> Section:
    cfg = runs.cfg
    rows = [result_row(runs, cfg.ours, f"{cfg.ours} (ours)")]
    for name, fields in cfg.ablations.items():
        rows.append(result_row(runs, name, ablation_label(name, fields)))
    return Section("Ablations (Tables 4-5)", [
        f"Each ablation is {cfg.ours}'s config with its own changes, at the same budget "
        f"unless it changes that. w/o L_rank also drops the principle prompt: its pair is "
        f"two plain samples. {_sentence(_spread_words(cfg))}.",
        Table(f"{cfg.task}: ablations", result_header(runs), rows)])


def _png(fig) -> bytes:
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
        f"Judge: {example['judge']}. {_sentence(example['rule'])} (model A: {cfg.ours}). "
        f"The responses are the evaluation's, on the same test queries. "
        f"{_sentence(_spread_words(cfg))}.",
        Table("win / tie / lose (%) of ours", ["pair", "win %", "tie %", "lose %",
                                               "pairs per seed"], rows),
        Figure("winrate.png", f"Win / tie / lose of {cfg.ours} against each other method "
               f"and the base model.", _png(fig))])


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
        Figure("reward_curves.png", caption, _png(fig))])


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
        "gap: no pair reached the margin that step.", _png(fig))])


def samples_section(runs: Runs) -> Section:
    cfg = runs.cfg
    seed = cfg.seeds[0]
    by_query = {name: {s["query"]: s for s in runs.samples[name, seed]} for name in runs.names}
    blocks: list = [f"Responses of seed {seed}'s evaluation to its first {SAMPLE_QUERIES} "
                    f"test queries, with their rewards."]
    for sample in runs.samples[BASE, seed][:SAMPLE_QUERIES]:
        query = sample["query"]
        blocks.append(Samples(query, [
            (name, by_query[name][query]["response"], by_query[name][query]["reward"])
            if query in by_query[name] else (name, f"{MISSING} (not among its test queries)",
                                             None)
            for name in runs.names]))
    return Section("Sample responses (Figure 4)", blocks)


def build(cfg: CompareConfig, specs: list[RunSpec]) -> tuple[str, list[Section]]:
    runs = Runs(cfg, specs)
    sections = [results_section(runs), paired_section(runs)]
    if cfg.frontier:
        sections.insert(1, Section("Reward–KL frontier", [
            "The reward–KL frontier of this config's curves (figures, reward at matched KL, "
            "every point with its guards) is in frontier.md (frontier.html) beside this "
            "report, with every run evaluated so far."]))
    if cfg.ablations:
        sections.append(ablation_section(runs))
    # A config that names its tuning stages is a test stage: a "chosen" mark on its test
    # queries would invite the choice on test that the tuning stages exist to avoid.
    choice = None if cfg.tuning else choice_section(runs)
    if choice:
        sections.append(choice)
    sections += tuning_sections(cfg)
    sections += [winrate_section(runs), curves_section(runs)]
    purity = purity_section(runs)
    if purity:
        sections.append(purity)
    sections.append(samples_section(runs))
    if cfg.discussion:
        paragraphs = [p for p in cfg.discussion.split("\n\n") if p.strip()]
        sections.insert(0, Section("Discussion", paragraphs))
    return f"ple compare: {cfg.task}, model {cfg.model}", sections


# --- rendering -------------------------------------------------------------------------
def _text(value) -> str:
    """Any text, model output included, made inert: one line, with <, > and & escaped
    (Markdown renderers pass raw HTML through). Quotes too where it goes in an attribute."""
    return html.escape(" ".join(str(value).split()), quote=False)


def md_cell(value) -> str:
    """Text as one Markdown table cell: inert (`_text`), its pipes escaped."""
    return _text(value).replace("|", "\\|")


def _reward(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.3f}"


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {_text(title)}", ""]
    for section in sections:
        lines += [f"## {_text(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, str):
                lines += [_text(block), ""]
            elif isinstance(block, Table):
                lines += [f"*{_text(block.caption)}*", "",
                          "| " + " | ".join(map(md_cell, block.header)) + " |",
                          "|" + "---|" * len(block.header)]
                lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Figure):
                lines += [f"![{_text(block.caption)}](figures/{block.name})", "",
                          f"*{_text(block.caption)}*", ""]
            else:
                lines += [f"**Query:** {_text(block.query)}", ""]
                lines += [f"- **{_text(name)}** (reward {_reward(reward)}): {_text(response)}"
                          for name, response, reward in block.responses]
                lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { caption-side: top; font-style: italic; text-align: left; padding-bottom: 0.3rem; }
figure { margin: 1rem 0 2rem; } img { max-width: 100%; }
figcaption { font-style: italic; font-size: 0.92rem; }
.query { font-weight: 600; margin-top: 1.5rem; }
.samples td { text-align: left; vertical-align: top; }
"""


def to_html(title: str, sections: list[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{_text(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{_text(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{_text(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, str):
                parts.append(f"<p>{_text(block)}</p>")
            elif isinstance(block, Table):
                parts.append(f"<table><caption>{_text(block.caption)}</caption><tr>"
                             + "".join(f"<th>{_text(h)}</th>" for h in block.header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{_text(c)}</td>" for c in row) + "</tr>"
                          for row in block.rows]
                parts.append("</table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(f'<figure><img alt="{html.escape(block.caption)}" '
                             f'src="data:image/png;base64,{data}"><figcaption>'
                             f"{_text(block.caption)}</figcaption></figure>")
            else:
                parts.append(f'<p class="query">Query: {_text(block.query)}</p>'
                             '<table class="samples"><tr><th>run</th><th>reward</th>'
                             "<th>response</th></tr>")
                parts += [f"<tr><td>{_text(name)}</td><td>{_reward(reward)}</td>"
                          f"<td>{_text(response)}</td></tr>"
                          for name, response, reward in block.responses]
                parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def figures(sections: list[Section]) -> dict[str, bytes]:
    return {b.name: b.png for s in sections for b in s.blocks if isinstance(b, Figure)}
