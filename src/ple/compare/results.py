"""The numbers of a report: what ple compare left on disk (Runs), read once, and the
sections made of them: the results and ablation tables, the paired differences and the
sample responses.

With one seed a number is the run's own (RM and every scorer with a 95 % interval over
the test responses); with several, the mean over seeds with Student's t's 95 % interval.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ple.compare.config import BASE, CompareConfig, RunSpec
from ple.compare.guards import GUARDS_RULE, guards_hold
from ple.compare.render import MISSING, Samples, Section, Table
from ple.evaluation.metrics import assistant_speak_share, ci95, paired_difference
from ple.evaluation.winrate import SAMPLES_FILE

SAMPLE_QUERIES = 3  # Figure 4 shows three
ABLATION_LABELS = {"no_rank": "w/o L_rank", "no_wsft": "w/o L_weighted-sft"}


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


def seeds_held(per_seed: list[bool]) -> str:
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
            seeds_held(runs.guards(name)) if name != BASE else MISSING,
            cell(runs.budget(name, "generated_responses"), 0) if name != BASE else MISSING,
            cell(runs.budget(name, "optimizer_steps"), 0) if name != BASE else MISSING,
            *extra, *paper]


def sentence(text: str) -> str:
    """`text` with its first letter upper-case, to open a sentence."""
    return text[:1].upper() + text[1:]


def spread_words(cfg: CompareConfig) -> str:
    """How the numbers spread over seeds (or over test responses with one seed), in words,
    for the notes under a table."""
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
        f"{spread_words(cfg)}.",
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
        f"two plain samples. {sentence(spread_words(cfg))}.",
        Table(f"{cfg.task}: ablations", result_header(runs), rows)])


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
