"""The reward-KL frontier report of `ple compare` (frontier.md, ple.compare.frontier): its
statistics by hand, and the report of fake run folders (eval.json files written here, no
training): figures, matched-KL cells, missing runs and ranges, the search's choice, and bad
`frontier` sections refused in one line."""

import json
import math
import re
import statistics
from pathlib import Path

import pytest
import yaml

from conftest import run_ple
from ple.compare.frontier import (Pt, choose_variant, default_kl_levels, interpolate_log_kl,
                                  log_kl_line, matched_cell)

T_1 = 12.706  # Student's t, 97.5 %, one degree of freedom (two seeds)


# --- the statistics by hand --------------------------------------------------------------
def test_interpolation_is_linear_in_log_kl_between_neighbours_and_never_extrapolates():
    points = [Pt(4.0, 1.0, 0.2), Pt(1.0, 0.2, 0.1), Pt(16.0, 1.1, 0.3)]  # any order
    # KL 2 is halfway from 1 to 4 in log KL: half of each neighbour.
    reward, se = interpolate_log_kl(points, 2.0)
    assert reward == pytest.approx(0.6)
    assert se == pytest.approx(math.sqrt(0.05 ** 2 + 0.1 ** 2))
    # KL 8: log 8 is halfway from log 4 to log 16.
    assert interpolate_log_kl(points, 8.0)[0] == pytest.approx(1.05)
    assert interpolate_log_kl(points, 1.0) == (0.2, 0.1)  # on a point: that point
    assert interpolate_log_kl(points, 16.0) == (1.1, 0.3)
    assert interpolate_log_kl(points, 0.99) is None  # below the range
    assert interpolate_log_kl(points, 17.0) is None  # above it
    # A point at KL <= 0 has no log: left out, so the range starts at the next.
    assert interpolate_log_kl([Pt(0.0, 0.0, 0.1), *points], 0.5) is None
    assert interpolate_log_kl([Pt(-0.01, 0.0, 0.1), *points], 2.0)[0] == pytest.approx(0.6)
    assert interpolate_log_kl([Pt(3.0, 0.5, 0.1)], 2.0) is None  # one point: no curve


def test_the_search_line_extrapolates_through_its_two_points():
    p, q = Pt(1.0, 0.2, 0.1), Pt(4.0, 1.0, 0.2)
    # KL 8: t = log 8 / log 4 = 1.5, so -0.5 p + 1.5 q.
    reward, se = log_kl_line(p, q, 8.0)
    assert reward == pytest.approx(-0.5 * 0.2 + 1.5 * 1.0)
    assert se == pytest.approx(math.hypot(0.5 * 0.1, 1.5 * 0.2))
    assert log_kl_line(q, p, 8.0)[0] == pytest.approx(reward)  # either order
    assert log_kl_line(p, Pt(1.0, 0.5, 0.1), 2.0) is None  # one KL: no line
    assert log_kl_line(Pt(0.0, 0.0, 0.1), q, 2.0) is None


def test_default_levels_are_the_quartiles_in_log_kl_to_two_figures():
    assert default_kl_levels([1.0, 10.0, 100.0, 1000.0, 10000.0]) == [10.0, 100.0, 1000.0]
    # 4 ** 0.25 = 1.414, 4 ** 0.5 = 2, 4 ** 0.75 = 2.83
    assert default_kl_levels([4.0, 1.0, -0.1]) == [1.4, 2.0, 2.8]
    assert default_kl_levels([0.0]) == []


def test_the_search_rule_picks_the_highest_reading_among_variants_holding_the_guards():
    variants = {
        # Highest rewards at its points, but its line falls toward KL 2: 1.2 there.
        "steep": (Pt(0.5, 1.4, 0.1), True, Pt(1.0, 1.3, 0.1), True),
        # Reads 1.5 at KL 2 (halfway from 1 to 4 in log KL).
        "good": (Pt(1.0, 1.0, 0.1), True, Pt(4.0, 2.0, 0.1), True),
        # Reads 2.5, but its high-KL point broke a guard.
        "hacked": (Pt(1.0, 1.0, 0.1), True, Pt(4.0, 4.0, 0.1), False),
        "unfinished": None,
    }
    assert log_kl_line(*variants["steep"][::2], 2.0)[0] == pytest.approx(1.2)
    assert choose_variant(variants, 2.0) == "good"
    # At KL 0.5 "steep" reads 1.4 and "good" 0.5.
    assert choose_variant(variants, 0.5) == "steep"
    assert choose_variant({"hacked": variants["hacked"], "unfinished": None}, 2.0) is None


def test_a_matched_cell_is_the_mean_over_seeds_with_students_t_or_says_why_not():
    seed0 = [Pt(1.0, 0.2, 0.1), Pt(4.0, 1.0, 0.1)]  # reads 0.6 at KL 2
    seed1 = [Pt(1.0, 0.4, 0.1), Pt(4.0, 1.2, 0.1)]  # reads 0.8
    half = T_1 * statistics.stdev([0.6, 0.8]) / math.sqrt(2)
    assert matched_cell([(seed0, True), (seed1, True)], 2.0, 2) == \
        f"0.700 [{0.7 - half:.3f}, {0.7 + half:.3f}]"
    # One seed: its reading with 1.96 standard errors of the weighted neighbours.
    se = math.hypot(0.05, 0.05)
    assert matched_cell([(seed0, True)], 2.0, 1) == \
        f"0.600 [{0.6 - 1.96 * se:.3f}, {0.6 + 1.96 * se:.3f}]"
    assert matched_cell([(seed0, True), (seed1, True)], 5.0, 2) == "outside its range (KL 1–4)"
    assert matched_cell([([Pt(3.0, 0.5, 0.1)], True)], 2.0, 1) == \
        "outside its range (KL 3 only)"
    # Seed 1 lacks its high-KL run so far: left out, and said so.
    assert matched_cell([(seed0, True), (seed1[:1], False)], 2.0, 2) == \
        f"0.600 [{0.6 - 1.96 * se:.3f}, {0.6 + 1.96 * se:.3f}] (1 of 2 seeds)"
    # Seed 0 misses its middle point: not read across the gap.
    three = [Pt(1.0, 0.2, 0.1), Pt(16.0, 1.4, 0.1)]
    assert matched_cell([(three, False), ([], False)], 2.0, 2) == "– (runs missing)"


# --- fake studies --------------------------------------------------------------------------
def eval_json(reward: float, kl: float, vader: float, *, ppl: float = 30.0, d2: float = 0.9,
              speak: float = 0.05, se: float = 0.05) -> dict:
    """What `ple eval` writes, the fields the reports read."""
    return {"n": 4, "test_data": "test.jsonl", "config": {"greedy": False},
            "reward": "imdb-sentiment", "reward_mean": reward, "reward_se": se,
            "kl_mean": kl, "kl_se": kl / 10, "reference_perplexity": None, "bleu": None,
            "base_perplexity": ppl, "distinct_2": d2, "assistant_speak": speak,
            "extra_rewards": {"vader": {"mean": vader, "se": se / 2}}}


def write_run(out: Path, name: str, seed: int, e: dict) -> None:
    """A run folder as ple compare leaves it: eval.json, its samples and metrics rows."""
    d = out / (f"base/seed{seed}" if name == "base" else f"runs/{name}/seed{seed}")
    d.mkdir(parents=True)
    (d / "eval.json").write_text(json.dumps(e))
    (d / "eval_samples.jsonl").write_text("".join(json.dumps(
        {"query": f"q{i}", "response": f"a fine film {i}", "reward": e["reward_mean"],
         "extra_rewards": {"vader": e["extra_rewards"]["vader"]["mean"]}}) + "\n"
        for i in range(4)))
    if name != "base":
        (d / "metrics.jsonl").write_text(json.dumps(
            {"step": 1, "generated_responses": 16, "optimizer_steps": 1}) + "\n")


def write_config(root: Path, methods: dict, frontier: dict, seeds=(0, 1), **top) -> Path:
    cfg = {"task": "imdb", "model": "tiny", "seeds": list(seeds), "output_dir": "out",
           "methods": methods, "frontier": frontier, **top}
    path = root / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def markdown_table(md: str, caption: str) -> dict[str, list[str]]:
    """The rows of the table under `*caption*`, by their first cell."""
    lines = md.split(f"*{caption}*\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]
    return {row[0]: row[1:] for row in rows}


METHODS = {"ple-lo": {"kl_coef": 3.0}, "ple-mid": {"kl_coef": 1.0},
           "ple-hi": {"kl_coef": 0.3}, "raft-lo": {"method": "raft", "learning_rate": 1e-5},
           "raft-hi": {"method": "raft", "learning_rate": 1e-4},
           "one": {"learning_rate": 1e-5}}
CURVES = {"ple": ["ple-lo", "ple-mid", "ple-hi"], "raft": ["raft-lo", "raft-hi"],
          "single": ["one"]}
# (reward, KL, vader) per seed
NUMBERS = {"base": [(0.0, 0.0, 0.1), (0.1, 0.0, 0.1)],
           "ple-lo": [(0.2, 1.0, 0.2), (0.4, 1.0, 0.3)],
           "ple-mid": [(1.0, 4.0, 0.4), (1.2, 4.0, 0.5)],
           "ple-hi": [(1.4, 16.0, 0.6), (1.6, 16.0, 0.7)],
           "raft-lo": [(0.5, 2.0, 0.2), None],  # seed 1 still training
           "raft-hi": [(1.5, 8.0, 0.9), (1.3, 8.0, 0.8)],
           "one": [None, None]}  # not started


@pytest.fixture
def study(tmp_path):
    write_config(tmp_path, {**METHODS}, {"curves": CURVES, "kl_levels": [2.0, 8.0, 32.0]},
                 ours="ple-mid")
    for name, per_seed in NUMBERS.items():
        for seed, numbers in enumerate(per_seed):
            if numbers:
                write_run(tmp_path / "out", name, seed, eval_json(*numbers))
    return tmp_path


def test_report_only_writes_the_frontier_of_what_is_evaluated_so_far(study):
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=study)
    assert result.returncode == 0, result.stderr
    out = study / "out"
    assert "wrote out/frontier.md and out/frontier.html" in result.stdout
    md = (out / "frontier.md").read_text()
    for png in ("frontier-reward.png", "frontier-vader.png"):
        assert (out / "figures" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{png})" in md
    assert "Not evaluated yet (no eval.json with its KL), so missing from the figures and " \
           "tables: raft-lo (seed 1), one." in md
    # report.md links it; it has the other tables as ever.
    assert "frontier.md (frontier.html) beside this report" in (out / "report.md").read_text()

    table = markdown_table(md, "reward at matched KL: imdb-sentiment")
    assert list(table) == ["ple", "raft", "single"]
    # ple, KL 2: seeds read 0.6 and 0.8 (halfway between their KL-1 and KL-4 points).
    half = T_1 * statistics.stdev([0.6, 0.8]) / math.sqrt(2)
    assert table["ple"][0] == f"0.700 [{0.7 - half:.3f}, {0.7 + half:.3f}]"
    # KL 8: halfway from 4 to 16: 1.2 and 1.4.
    assert table["ple"][1] == f"1.300 [{1.3 - half:.3f}, {1.3 + half:.3f}]"
    assert table["ple"][2] == "outside its range (KL 1–16)"
    # raft, KL 2: on seed 0's point; seed 1 lacks it, so one seed, with its own SE.
    assert table["raft"][0] == f"0.500 [{0.5 - 1.96 * 0.05:.3f}, {0.5 + 1.96 * 0.05:.3f}] " \
                               f"(1 of 2 seeds)"
    # KL 8: on its KL-8 point, but seed 1 is not complete: seed 0's alone.
    assert table["raft"][1] == f"1.500 [{1.5 - 1.96 * 0.05:.3f}, {1.5 + 1.96 * 0.05:.3f}] " \
                               f"(1 of 2 seeds)"
    assert table["raft"][2] == "outside its range (KL 2–8)"
    assert table["single"] == ["– (runs missing)"] * 3
    vader = markdown_table(md, "reward at matched KL: vader")
    assert vader["ple"][0].startswith("0.350 [")  # (0.2 + 0.4)/2 and (0.3 + 0.5)/2
    assert "Student's t over the seeds' readings" in md

    points = markdown_table(md, "every point of every curve")
    assert points["one"] == ["single", "0/2", *["–"] * 7]
    assert points["raft-lo"][:3] == ["raft", "1/2", "2.000 [1.608, 2.392]"]  # 2 ± 1.96 0.2
    assert points["raft-hi"][-1] == "2/2"
    assert points["ple-lo"][:3] == ["ple", "2/2", "1.000 [1.000, 1.000]"]  # no spread


def test_the_frontier_is_written_even_before_ours_is_evaluated(study):
    """A study in its first session: ours has no evaluation yet, so report.md cannot be
    written; frontier.md is, of the runs that have one."""
    for seed in (0, 1):
        (study / f"out/runs/ple-mid/seed{seed}/eval.json").unlink()
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=study)
    assert result.returncode == 2
    assert "nothing to report" in result.stderr
    md = (study / "out/frontier.md").read_text()
    assert "missing from the figures and tables: ple-mid, raft-lo (seed 1), one." in md
    table = markdown_table(md, "reward at matched KL: imdb-sentiment")
    # Neither seed of ple has its middle point: not read across the gap from KL 1 to 16.
    assert table["ple"] == ["– (runs missing)"] * 3
    assert table["raft"][1].endswith("(1 of 2 seeds)")
    points = markdown_table(md, "every point of every curve")
    assert points["ple-mid"] == ["ple", "0/2", *["–"] * 7]


SEARCH_METHODS = {f"{v}-kl{k}": {"kl_coef": float(k)} for v in ("a", "b", "c") for k in (3, 0.3)}
# (reward, KL, vader, distinct-2): b's high-KL point repeats itself (distinct-2 -20 %).
SEARCH = {"base": (0.0, 0.0, 0.0, 0.9),
          "a-kl3": (0.5, 1.0, 0.1, 0.9), "a-kl0.3": (1.0, 4.0, 0.1, 0.9),      # 0.75 at 2
          "b-kl3": (0.8, 1.0, 0.1, 0.9), "b-kl0.3": (2.0, 4.0, 0.1, 0.72),     # 1.4, failed
          "c-kl3": (0.9, 1.0, 0.1, 0.9), "c-kl0.3": (1.3, 4.0, 0.1, 0.88)}     # 1.1


def test_the_search_table_names_the_best_variant_by_the_configs_rule(tmp_path):
    curves = {v: [f"{v}-kl3", f"{v}-kl0.3"] for v in ("a", "b", "c")}
    write_config(tmp_path, SEARCH_METHODS, {"curves": curves, "choose_at_kl": 2.0},
                 seeds=[0], ours="a-kl0.3")
    for name, (reward, kl, vader, d2) in SEARCH.items():
        write_run(tmp_path / "out", name, 0, eval_json(reward, kl, vader, d2=d2))
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "out/frontier.md").read_text()
    table = markdown_table(md, "the search: reward at KL 2")
    se = math.hypot(0.5 * 0.05, 0.5 * 0.05)
    assert table["a"] == ["a-kl3", "1.000 ± 0.100", "0.500 ± 0.050", "held",
                          "a-kl0.3", "4.000 ± 0.400", "1.000 ± 0.050", "held",
                          f"0.750 ± {se:.3f}", ""]
    assert table["b"][7:9] == ["failed", f"1.400 ± {se:.3f}"] and table["b"][9] == ""
    assert table["c"][8:] == [f"1.100 ± {se:.3f}", "best"]
    assert "Best so far: c." in md
    assert "straight line through its two points in (log KL, reward)" in md

    # c's high-KL run not evaluated yet: the choice is among the rest, and says so.
    (tmp_path / "out/runs/c-kl0.3/seed0/eval.json").unlink()
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    md = (tmp_path / "out/frontier.md").read_text()
    table = markdown_table(md, "the search: reward at KL 2")
    assert table["c"][4:] == ["c-kl0.3", "–", "–", "–", "–", ""]
    assert table["a"][9] == "best"
    assert "Best so far: a (not evaluated yet, so not in the running: c)." in md


BAD = [
    ("frontier:\n  curvez: {}\n", "compare.yaml:7: unknown key `frontier.curvez` (known: "
                                  "curves, kl_levels, choose_at_kl)"),
    ("frontier:\n  kl_levels: [1]\n", "compare.yaml:6: `frontier` needs `curves`"),
    ("frontier:\n  curves:\n    x: [a, nope]\n",
     "compare.yaml:8: `frontier.curves.x`: `nope` is no method or ablation of this config"),
    ("frontier:\n  curves:\n    x: [a]\n    y: [b, a]\n",
     "compare.yaml:9: `frontier.curves.y`: `a` is on curve `x` already"),
    ("frontier:\n  curves:\n    x: a\n",
     "compare.yaml:8: `frontier.curves.x` must be a non-empty list of run names"),
    ("frontier:\n  curves:\n    x: [a, b]\n  kl_levels: [4, 2]\n",
     "compare.yaml:9: `frontier.kl_levels` must be a list of increasing KLs > 0 (nats), "
     "got [4, 2]"),
    ("frontier:\n  curves:\n    x: [a, b]\n  choose_at_kl: -1\n",
     "compare.yaml:9: `frontier.choose_at_kl` must be a KL > 0 (nats), got -1.0"),
    ("frontier:\n  curves:\n    x: [a, b]\n    y: [c]\n  choose_at_kl: 2\n",
     "compare.yaml:9: `frontier.curves.y`: with `frontier.choose_at_kl` every curve is two "
     "runs (the line the search reads), it has 1"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m.split(": ", 1)[1][:30] for _, m in BAD])
def test_a_bad_frontier_section_is_refused_in_one_line_naming_the_key(tmp_path, text,
                                                                       message):
    head = "methods:\n  a: {}\n  b: {kl_coef: 1.0}\n  c: {kl_coef: 3.0}\nours: a\n"
    (tmp_path / "compare.yaml").write_text(head + text)
    result = run_ple("compare", "--config", "compare.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"ple: error: {message}\n" or \
        (result.stderr.startswith(f"ple: error: {message}") and
         result.stderr.count("\n") == 1), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.yaml"]


def test_the_study_configs_name_every_run_on_a_curve():
    from conftest import REPO
    from ple.compare.config import load_compare_config

    search = load_compare_config(str(REPO / "configs/compare/imdb-ple-search.yaml"))
    assert search.frontier.choose_at_kl == 2.0
    assert len(search.frontier.curves) >= 12
    assert sorted(r for c in search.frontier.curves.values() for r in c) == \
        sorted(search.methods)
    for curve, (low, high) in search.frontier.curves.items():
        assert (low, high) == (f"{curve}-kl3", f"{curve}-kl0.3")
    test = load_compare_config(str(REPO / "configs/compare/imdb-frontier.yaml"))
    assert sorted(r for c in test.frontier.curves.values() for r in c) == sorted(test.methods)
    assert test.frontier.curves["sft"] == ["sft"]
    assert all(len(runs) >= 5 for name, runs in test.frontier.curves.items() if name != "sft")
    assert re.fullmatch(r"[a-z-]+", "".join(test.frontier.curves))
