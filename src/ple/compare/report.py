"""report.md and report.html of `ple compare`, laid out like the paper's results:

- the main table (Tables 1-3): PPL of the references, RM, the KL of each policy from the
  base model on its responses, BLEU, and three guards against reward hacking (the
  responses' perplexity under the base model, distinct-2, assistant-speak), with the budget;
- the ablation table (Tables 4-5);
- win/tie/lose of ours against every other method and the base model (Figure 2a);
- training reward over generated responses (Figure 3), and level-set purity per step;
- responses to a few held-out queries (Figure 4).

This module puts the sections together; ple.compare.results reads the runs and makes the
tables, ple.compare.guards and ple.compare.selection judge the runs and choose settings,
ple.compare.figures draws, and ple.compare.render writes Markdown and HTML.
"""

from __future__ import annotations

from ple.compare.config import CompareConfig, RunSpec
from ple.compare.figures import curves_section, purity_section, winrate_section
from ple.compare.render import Section
from ple.compare.results import (Runs, ablation_section, paired_section, results_section,
                                 samples_section)
from ple.compare.selection import choice_section, tuning_sections


def build(cfg: CompareConfig, specs: list[RunSpec]) -> tuple[str, list[Section]]:
    """The report's title and sections, for the runs `specs` of `cfg` (all evaluated)."""
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
