"""The choice of a method's settings: among the runs of one method with different settings,
the highest mean RM among those whose guards hold on every seed (ple.compare.guards); and
the tables of the tuning stages a config names, so that its report shows where its
settings came from.
"""

from __future__ import annotations

import statistics

from ple.compare.config import BASE, CompareConfig, load_compare_config, run_specs
from ple.compare.guards import GUARDS_RULE
from ple.compare.render import Section, Table
from ple.compare.results import Runs, seeds_held
from ple.compare.study import finished_part


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
                         seeds_held(held[n]),
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
