"""`ple compare` on the tiny model (configs/compare/tiny.yaml: ple and raft, the no_wsft
ablation, seeds 0 and 1): the report's numbers against the runs' own eval.json, a
self-contained HTML that escapes model text, reuse of finished runs, and bad configs."""

import html
import json
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_ple

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training

CONFIG = REPO / "configs" / "compare" / "tiny.yaml"
SEEDS = (0, 1)
REVIEWS = [
    "A warm and funny film with a cast that clearly enjoyed every minute of making it.",
    "I loved this movie from the first scene to the last, and the music is wonderful too.",
    "One of the best films of the year: smart, moving, beautifully shot and very well acted.",
    "The story is simple but the performances are so good that it never feels thin at all.",
    "What a delight this was, a small film with a big heart and a lovely final act indeed.",
]
SCRIPT = "<script>alert('x')</script>"


def write_config(root: Path, **changes) -> Path:
    """configs/compare/tiny.yaml with the test split below (references: PPL and BLEU) and
    output_dir `out`, plus `changes` to the common fields."""
    test = root / "test.jsonl"
    test.write_text("".join(json.dumps({"text": t, "label": 1}) + "\n" for t in REVIEWS))
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["output_dir"] = "out"
    cfg["eval"]["test_data"] = str(test)
    # A second scorer of the same responses, as the study adds VADER beside its classifier.
    (root / "length_score.py").write_text("def score(prompts, completions):\n"
                                          "    return [len(c) / 10 for c in completions]\n")
    cfg["eval"]["extra_rewards"] = "length_score:score"
    cfg["paper"] = {"base": -0.41, "ple": 1.33}
    # A checkpoint every step, so that a run can stop between two of them.
    cfg["common"].update({"save_steps": 1, **changes})
    path = root / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snapshot(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    write_config(root)
    result = run_ple("compare", "--config", "compare.yaml", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


@pytest.fixture(scope="module")
def second(first):
    """The same command again, after a `<script>` response was planted in ple's seed-0
    evaluation, raft seed 1 was left as a run stopped after its first step's checkpoint,
    and no_wsft seed 1 as one stopped before its first."""
    root, _ = first
    out = root / "out"
    samples = out / "runs/ple/seed0/eval_samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows[0]["response"] = SCRIPT
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raft = out / "runs/raft/seed1"
    for gone in ("summary.json", "adapter", "checkpoint-2"):
        shutil.rmtree(raft / gone) if (raft / gone).is_dir() else (raft / gone).unlink()
    no_wsft = out / "runs/no_wsft/seed1"
    for gone in ("summary.json", "adapter", *(p.name for p in no_wsft.glob("checkpoint-*"))):
        shutil.rmtree(no_wsft / gone) if (no_wsft / gone).is_dir() else (no_wsft / gone).unlink()
    before = snapshot(out)
    result = run_ple("compare", "--config", "compare.yaml", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result, before


def markdown_table(md: str, caption: str) -> dict[str, list[str]]:
    """The rows of the table under `*caption*`, by their first cell."""
    lines = md.split(f"*{caption}*\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]
    return {row[0]: row[1:] for row in rows}


def as_shown(text: str) -> str:
    """Model text as the report shows it: one line, HTML special characters escaped."""
    return html.escape(" ".join(text.split()), quote=False)


def expected(values: list[float], digits: int) -> str:
    """The mean over the two seeds with Student's t's 95 % interval (1 degree of freedom),
    or the value where they agree."""
    if len(set(values)) == 1:
        return f"{values[0]:.{digits}f}"
    mean, half = statistics.mean(values), 12.706 * statistics.stdev(values) / 2 ** 0.5
    return f"{mean:.{digits}f} [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"


def interval(evals: list[dict], get) -> str:
    """Mean over the seeds with Student's t's 95 % interval (two seeds: 1 degree of freedom)."""
    means = [get(e)["mean"] for e in evals]
    mean, half = statistics.mean(means), 12.706 * statistics.stdev(means) / len(means) ** 0.5
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def test_tables_hold_the_numbers_of_each_runs_eval_json(first):
    root, result = first
    out = root / "out"
    md = (out / "report.md").read_text()
    main = markdown_table(md, "imdb: methods")
    assert list(main) == ["BASE", "ple", "raft"]
    ablations = markdown_table(md, "imdb: ablations")
    assert list(ablations) == ["ple (ours)", "no_wsft: w/o L_weighted-sft"]
    for table, label, run in ((main, "BASE", "base/seed{}"), (main, "ple", "runs/ple/seed{}"),
                              (main, "raft", "runs/raft/seed{}"),
                              (ablations, "ple (ours)", "runs/ple/seed{}"),
                              (ablations, "no_wsft: w/o L_weighted-sft",
                               "runs/no_wsft/seed{}")):
        evals = [json.loads((out / run.format(s) / "eval.json").read_text()) for s in SEEDS]
        assert all(e["n"] == 4 and e["bleu"] is not None and e["bleu_references_cut"]
                   for e in evals)
        assert table[label][:7] == [
            expected([e["reference_perplexity"] for e in evals], 2),
            interval(evals, lambda e: {"mean": e["reward_mean"]}),
            "0.000" if label == "BASE" else interval(evals, lambda e: {"mean": e["kl_mean"]}),
            expected([e["bleu"] for e in evals], 2),
            expected([e["base_perplexity"] for e in evals], 2),
            expected([e["distinct_2"] for e in evals], 3),
            expected([100 * e["assistant_speak"] for e in evals], 1)]
        # Guards per seed, each against that seed's BASE: base-PPL within [1/1.5, 1.5]x its
        # own, distinct-2 at most 10 % lower, assistant-speak at most 10 points higher.
        bases = [json.loads((out / f"base/seed{s}/eval.json").read_text()) for s in SEEDS]
        held = sum(1 / 1.5 <= e["base_perplexity"] / b["base_perplexity"] <= 1.5
                   and e["distinct_2"] >= 0.9 * b["distinct_2"]
                   and e["assistant_speak"] <= b["assistant_speak"] + 0.1
                   for e, b in zip(evals, bases))
        assert table[label][7] == ("–" if label == "BASE" else f"{held}/2")
    assert all(json.loads((out / f"base/seed{s}/eval.json").read_text())["kl_mean"] == 0
               for s in SEEDS)
    # The equal budget: 2 steps of 2 queries, with 2 responses each.
    assert main["ple"][8:10] == ["8", "2"] and main["raft"][8] == "8"
    assert main["BASE"][8:10] == ["–", "–"]
    assert "length_score:score ↑" in md
    assert "against the references (each cut to its response's length in words)" in md
    evals = [json.loads((out / f"runs/ple/seed{s}/eval.json").read_text()) for s in SEEDS]
    assert main["ple"][10] == interval(evals, lambda e: e["extra_rewards"]["length_score:score"])
    # The paper's numbers beside ours, where the config gives them.
    assert (main["BASE"][11], main["ple"][11], main["raft"][11]) == ("-0.41", "1.33", "–")
    assert ablations["ple (ours)"][11] == "1.33"
    # The guards' description says what they are.
    assert "guards held: on how many of its seeds the run's base-PPL is between 0.667 and " \
           "1.5 × BASE's, its distinct-2 at most 10 % below BASE's and its assistant-speak " \
           "at most 10 percentage points above BASE's, each against the same seed's BASE" in md

    # Ours minus each run on the same test queries: the mean over seeds of each seed's
    # paired mean, with Student's t (1 degree of freedom) over the two seeds.
    paired = markdown_table(md, "imdb: ours minus each run")
    assert list(paired) == ["ple − BASE", "ple − raft", "ple − no_wsft"]
    def score(row, column):
        return row["reward"] if column == 0 else row["extra_rewards"]["length_score:score"]

    for label, run in (("ple − BASE", "base/seed{}"), ("ple − raft", "runs/raft/seed{}")):
        for column in (0, 1):
            means, by_seed = [], []
            for seed in SEEDS:
                ours = {r["query"]: score(r, column) for r in map(json.loads, open(
                    out / f"runs/ple/seed{seed}/eval_samples.jsonl"))}
                theirs = {r["query"]: score(r, column) for r in map(json.loads, open(
                    out / run.format(seed) / "eval_samples.jsonl"))}
                diffs = [ours[q] - theirs[q] for q in ours]
                means.append(statistics.mean(diffs))
                se = statistics.stdev(diffs) / len(diffs) ** 0.5
                by_seed.append(f"{seed}: {means[-1]:+.3f} ± {se:.3f}")
            mean = statistics.mean(means)
            half = 12.706 * statistics.stdev(means) / len(means) ** 0.5
            assert paired[label][column] == \
                f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"
            # Each seed's own paired difference, after the scorers' columns.
            assert paired[label][2 + column] == ", ".join(by_seed)

    wins = markdown_table(md, "win / tie / lose (%) of ours")
    assert list(wins) == ["ple vs raft", "ple vs base"]
    reports = [json.loads((out / f"winrates/seed{s}/ple-vs-raft.json").read_text())
               for s in SEEDS]
    assert wins["ple vs raft"] == [expected([100 * r[f"{k}_rate"] for r in reports], 0)
                                   for k in ("win", "tie", "lose")] + ["4"]
    assert reports[0]["model_a"]["label"] == "ple" and reports[0]["judge"] == "reward vader"

    base0 = [json.loads(line) for line in open(out / "base/seed0/eval_samples.jsonl")]
    ple0 = {r["query"]: r for r in map(json.loads, open(out / "runs/ple/seed0/"
                                                        "eval_samples.jsonl"))}
    assert md.count("**Query:**") == 3
    first_query = base0[0]["query"]
    assert f"**Query:** {as_shown(first_query)}" in md
    assert f"- **ple** (reward {ple0[first_query]['reward']:+.3f}): " \
           f"{as_shown(ple0[first_query]['response'])}\n" in md
    for figure in ("winrate.png", "reward_curves.png", "purity.png"):
        assert f"(figures/{figure})" in md and (out / "figures" / figure).stat().st_size > 0
    assert result.stdout.count(": training in ") == 6 and "reused" not in result.stdout


def test_second_invocation_reuses_finished_runs_and_evaluations(second):
    root, result, before = second
    out = root / "out"
    stdout = result.stdout
    assert stdout.count("reused the finished run") == 4
    assert stdout.count(": training in ") == 1
    assert "no_wsft seed 1: training in out/runs/no_wsft/seed1 (replacing an unfinished " \
           "run" in stdout
    assert "raft seed 1: resuming the unfinished run in out/runs/raft/seed1 from " \
           "checkpoint-1" in stdout
    assert stdout.count("reused the evaluation") == 6  # 2 base + 4 runs
    # ple's seed-0 responses changed, so both its seed-0 pairs are judged again; at seed 1
    # the pair with the base model is not (raft's was retrained, so it may be).
    assert "raft seed 0: judging ple against raft" in stdout
    assert "base seed 0: judging ple against base" in stdout
    assert "base seed 1: reused the win rates" in stdout
    after = snapshot(out)
    rerun = ("raft/seed1", "no_wsft/seed1")
    untouched = [p for p in before if not any(r in str(p) for r in rerun)
                 and "winrates" not in str(p)
                 and "report" not in str(p) and "figures" not in str(p)]
    assert untouched and all(after[p] == before[p] for p in untouched)
    assert (out / "runs/raft/seed1/summary.json").is_file()
    # The resumed run kept its first step and trained the second.
    raft = out / "runs/raft/seed1"
    assert after[raft / "checkpoint-1/adapter_model.safetensors"] == \
        before[raft / "checkpoint-1/adapter_model.safetensors"]
    assert [json.loads(x)["step"] for x in open(raft / "metrics.jsonl")] == [1, 2]


def test_html_is_self_contained_and_escapes_model_text(second):
    root, _, _ = second
    page = (root / "out/report.html").read_text()
    assert SCRIPT not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and "href=" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    md = (root / "out/report.md").read_text()
    assert SCRIPT not in md and "&lt;script&gt;" in md


def test_a_changed_config_for_an_existing_run_exits_2_and_changes_nothing(second):
    root, _, _ = second
    before = snapshot(root / "out")
    write_config(root, learning_rate=0.01)
    result = run_ple("compare", "--config", "compare.yaml", cwd=root)
    write_config(root)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert re.match(r"ple: error: compare\.yaml:\d+: ple seed 0: out/runs/ple/seed0 holds a "
                    r"run of another config \(learning_rate 0\.05 there, 0\.01 here\)",
                    result.stderr), result.stderr
    assert snapshot(root / "out") == before


BAD_CONFIGS = [
    ("methods:\n  ple: {method: ple, stepz: 3}\n",
     "compare.yaml:2: unknown config key `methods.ple.stepz`"),
    ("methods:\n  ple: {method: ple}\nseedz: [0]\n", "compare.yaml:3: unknown key `seedz`"),
    ("common:\n  seed: 3\nmethods:\n  ple: {}\n",
     "compare.yaml:2: `common.seed`: set `seeds` at the top level"),
    ("methods:\n  ple: {}\n  ple: {method: raft}\n",
     "compare.yaml:3: `ple` repeats the one at compare.yaml:2"),
    ("methods:\n  base: {}\n", "compare.yaml:2: `methods.base`: a run name is a directory"),
    ("methods:\n  raft: {method: raft}\n", "compare.yaml:1: `methods`: no method named `ple`"),
    ("methods:\n  ple: {max_steps: 0}\n",
     "compare.yaml:2: methods.ple: config key `max_steps` = 0: must be >= 1"),
    ("ours: raft\nmethods:\n  raft: {method: raft}\nablations:\n  x: {ablation: no_rank}\n",
     "compare.yaml:5: ablations.x: ablations are of PLE, but `ours` (raft) is method raft"),
    ("methods:\n  ple: {}\neval:\n  n: 0\n", "compare.yaml:3: eval: -n 0: must be >= 1"),
    ("methods:\n  ple: {}\neval:\n  seed: 1\n",
     "compare.yaml:4: `eval.seed` is set by ple compare for each run"),
    ("methods:\n  ple: {}\nwinrate:\n  judge: reward\n",
     "compare.yaml:3: `winrate`: judge reward needs reward"),
    ("seeds: [0, 0]\nmethods:\n  ple: {}\n", "compare.yaml:1: `seeds`: must be one or more"),
    ("seeds: 0\nmethods:\n  ple: {}\n",
     "compare.yaml:1: `seeds` must be a list of integers, got 0"),
    ("methods:\n  ple: {}\nablations:\n  ple: {}\n",
     "compare.yaml:3: `ablations`: `ple` is also a method"),
    ("methods:\n  ple: {}\npaper:\n  ple: high\n",
     "compare.yaml:4: `paper.ple` must be a number, got 'high'"),
    ("methods:\n  ple: {}\npaper:\n  dpo: 0.92\n",
     "compare.yaml:3: `paper`: `dpo` is no run of this config"),
    ("methods:\n  ple: {}\nmethod_seeds:\n  ple: [0]\n",
     "compare.yaml:3: `method_seeds`: `ple` is no method or ablation of this config other "
     "than `ple`"),
    ("seeds: [0, 1]\nmethods:\n  ple: {}\n  raft: {method: raft}\nmethod_seeds:\n  raft: [1]\n",
     "compare.yaml:5: `method_seeds`: raft: [1] must be distinct seeds of `seeds` ([0, 1]) "
     "beginning with the first, 0"),
    ("methods:\n  ple: {}\ntuning: [tune.yaml]\n",
     "compare.yaml:3: `tuning`: tune.yaml: no such compare config"),
    ("methods:\n  ple: {}\ntuning: tune.yaml\n",
     "compare.yaml:3: `tuning` must be a list of strings, got 'tune.yaml'"),
    ("methods:\n  sft: {method: sft}\nours: sft\n",
     "compare.yaml:2: methods.sft: config key `data`: method sft needs supervised data"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS, ids=[m.split(": ", 1)[1][:30]
                                                           for _, m in BAD_CONFIGS])
def test_bad_configs_exit_2_naming_file_and_line_before_anything_runs(tmp_path, text,
                                                                      message):
    (tmp_path / "compare.yaml").write_text(text)
    result = run_ple("compare", "--config", "compare.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ple: error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.yaml"]


def test_the_shipped_comparison_configs_load():
    from ple.compare.config import load_compare_config, run_specs

    cfg = load_compare_config(str(REPO / "configs" / "compare" / "imdb.yaml"))
    assert list(cfg.methods) == ["ple", "raft", "rloo", "ppo", "dpo", "sft"]
    specs = {s.name: s.config for s in run_specs(cfg)}
    assert specs["no_rank"].ablation == "no_rank" and specs["no_wsft"].max_steps == 10
    assert {c.model for c in specs.values()} == {"default"}


def test_the_efficiency_config_spends_equal_budgets():
    """configs/compare/efficiency.yaml (BENCHMARKS.md): 160 sampled responses per run."""
    from ple.compare.config import load_compare_config, run_specs

    cfg = load_compare_config(str(REPO / "configs" / "compare" / "efficiency.yaml"))
    assert cfg.seeds == [0, 1, 2]
    specs = {s.name: s.config for s in run_specs(cfg)}
    ple, raft = specs["ple"], specs["raft"]
    assert ple.max_steps * ple.batch_size * 2 == 160
    assert raft.max_steps * raft.batch_size * raft.raft_k == 160


GRID = {(m, lr) for m in ("ple", "raft", "rloo", "ppo", "dpo", "sft") for lr in (1e-4, 3e-4, 1e-3)}


@pytest.mark.parametrize("name,rates,split,n,seeds", [
    ("imdb-tune-lr", GRID, "valid", 128, [0]),
    ("imdb-tune-baselines",
     {x for x in GRID if x[0] != "ple"} | {("ple", 3e-4), ("ppo", 3e-5), ("ppo", 1e-5)},
     "valid", 128, [0]),
    ("imdb-tune-kl", {("ple", 3e-4), ("raft", 3e-4), ("raft", 1e-4)}, "valid", 128,
     [0, 1, 2, 3, 4]),
    ("imdb-study", None, "shared/data/imdb/test.jsonl", 256, [0, 1, 2, 3, 4])])
def test_the_study_configs_spend_at_least_1000_responses_per_method(name, rates, split, n,
                                                                      seeds, monkeypatch):
    """The IMDb study's configs (issue 14): >= 1,000 generated responses per run (SFT and
    DPO: PLE's optimizer steps), the paper's reward with VADER beside it; the tuning grids
    every method at three learning rates on validation (PPO at five: its first three all
    hacked the reward), the test stage 256 test openings over five seeds."""
    from ple.compare.config import load_compare_config, run_specs

    monkeypatch.chdir(REPO)  # the test stage names its tuning configs from the repository
    cfg = load_compare_config(str(REPO / "configs" / "compare" / f"{name}.yaml"))
    specs = [s.config for s in run_specs(cfg)]
    responses = {"ple": lambda c: c.max_steps * c.batch_size * 2,
                 "raft": lambda c: c.max_steps * c.batch_size * c.raft_k,
                 "rloo": lambda c: c.max_steps * c.batch_size * 2,
                 "ppo": lambda c: c.max_steps * c.batch_size,
                 "dpo": lambda c: c.max_steps * c.batch_size * 2}
    for c in specs:
        if c.method in responses:
            assert 1000 <= responses[c.method](c) <= 1100, c.output_dir
        else:
            assert c.max_steps == 63
    if rates is not None:
        assert {(c.method, c.learning_rate) for c in specs} == rates
    assert {c.reward for c in specs} == {"imdb-sentiment"}
    assert split in cfg.eval["test_data"] and cfg.eval["extra_rewards"] == "vader"
    assert cfg.eval["n"] == n and cfg.seeds == seeds


def study_runs(name: str) -> dict[tuple[str, int], dict]:
    """(run name, seed) -> its training config, output_dir aside, of configs/compare/NAME.yaml."""
    from ple.compare.config import load_compare_config, run_specs

    cfg = load_compare_config(str(REPO / "configs" / "compare" / f"{name}.yaml"))
    return {(s.name, s.seed): {k: v for k, v in s.config.to_dict().items()
                               if k != "output_dir"} for s in run_specs(cfg)}


def test_the_three_seed_grid_varies_only_kl_coef_and_raft_rates_from_the_test_stage():
    """imdb-tune-kl.yaml's runs are the test stage's PLE with kl_coef changed (at seed 0 and
    kl 0, tune-baselines' PLE run, reused) and tune-baselines' guarded RAFT-4 rates (seed 0:
    its runs, reused), and nothing else; the test stage takes its PLE at kl 1 (ours: the choice
    on five seeds) and at kl 0.3 (on three), its RAFT-4 at 1e-4, and ablates its PLE at kl 1,
    kl 0.3 and kl 0."""
    grid, study, tuned = study_runs("imdb-tune-kl"), study_runs("imdb-study"), \
        study_runs("imdb-tune-baselines")
    for name in ("ple", "raft-3e-4", "raft-1e-4"):
        assert grid[name, 0] == tuned[name, 0]
    for (name, seed), config in grid.items():
        if name.startswith("ple"):
            assert {**config, "kl_coef": 0.3} == study["ple-kl0.3", seed], name
            if name in ("ple-kl1", "ple-kl0.3"):  # as chosen here on five and three seeds
                assert config == study[name, seed]
        else:
            assert {**config, "learning_rate": 3.0e-4} == study["raft", seed], name
            if name == "raft-1e-4":  # RAFT-4 as chosen here
                assert config == study[name, seed]
    assert sorted({c["kl_coef"] for c in grid.values() if c["method"] == "ple"}) == \
        [0.0, 0.3, 1.0, 10.0]
    for ablation in ("no_rank", "no_wsft"):  # Table 4: ours's ablations, kl 0.3's and kl 0's
        for ple in ("ple-kl1", "ple-kl0.3"):
            assert {**study[f"{ablation}-{ple[4:]}", 0], "ablation": None} == study[ple, 0]
        assert {**study[ablation, 0], "ablation": None} == study["ple", 0]


def test_the_test_stages_baselines_are_the_runs_their_tuning_chose():
    """Each other baseline of imdb-study.yaml is, field for field, the imdb-tune-baselines.yaml
    run at the rate chosen there (docs/results/imdb/README.md item 7), so that a baseline
    cannot reach the test stage at settings no validation run measured."""
    study, tuned = study_runs("imdb-study"), study_runs("imdb-tune-baselines")
    chosen = {"sft": "sft-1e-3", "dpo": "dpo-1e-3", "ppo": "ppo-3e-5",
              "rloo": "rloo-1e-4"}
    for name, run in chosen.items():
        assert study[name, 0] == tuned[run, 0], name
    assert {c["method"] for c in study.values()} - {"ple", "raft"} == set(chosen)


def test_guards_hold_base_ppl_both_ways_distinct_2_and_assistant_speak():
    from ple.compare.guards import guards_hold

    base = {"base_perplexity": 24.0, "distinct_2": 0.80, "assistant_speak": 0.05}
    def run(ppl, d2=0.80, speak=0.05):
        return {"base_perplexity": ppl, "distinct_2": d2, "assistant_speak": speak}

    assert guards_hold(run(34.8, 0.73), base)        # 1.45x, distinct-2 -8.8 %
    assert guards_hold(run(36.0), base)              # 1.5x: at the edge
    assert not guards_hold(run(37.2), base)          # 1.55x
    assert not guards_hold(run(26.4, 0.71), base)    # distinct-2 -11 %
    # Two-sided: a hacked run lowers base-PPL (a register the base finds likely).
    assert guards_hold(run(16.0), base)              # 1/1.5 of BASE's: at the edge
    assert not guards_hold(run(15.6), base)          # 0.65x
    # Assistant-speak at most 10 percentage points above BASE's (DPO on IMDb test: 45 %
    # against BASE's 5 %, while base-PPL and distinct-2 held).
    assert guards_hold(run(24.0, speak=0.149), base)
    assert not guards_hold(run(24.0, speak=0.151), base)
    assert not guards_hold(run(30.6, 0.746, 0.453), base)
    assert guards_hold(run(24.0, speak=0.0), base)   # less than BASE's is no drift


def test_an_ablation_row_names_what_it_drops_and_every_other_field_it_changes():
    """The issue-14 study keeps ablations of ple at kl 0 beside those of ours (kl 0.3): their
    rows must say they differ from ours in more than the loss they drop."""
    from ple.compare.results import ablation_label

    assert ablation_label("no_rank", {"ablation": "no_rank"}) == "no_rank: w/o L_rank"
    assert ablation_label("no_wsft-kl0", {"ablation": "no_wsft", "kl_coef": 0.0}) == \
        "no_wsft-kl0: w/o L_weighted-sft, kl_coef 0.0"
    assert ablation_label("tau-half", {"tau0": 0.5}) == "tau-half: tau0 0.5"


def test_reward_figure_draws_each_budget_against_the_mean_over_seeds():
    from ple.compare.figures import reward_series

    def row(step, generated, reward, **extra):
        return {"step": step, "generated_responses": generated, "reward_mean": reward,
                **extra}

    metrics = {
        # ours: y' logged every step, a held-out evaluation at step 2 (seed 1 also at 1)
        ("ple", 0): [row(1, 4, 0.1, reward_prompt_mean=0.5),
                     row(2, 8, 0.3, reward_prompt_mean=0.7, eval_reward_mean=0.2)],
        ("ple", 1): [row(1, 4, 0.3, reward_prompt_mean=0.9, eval_reward_mean=0.0),
                     row(2, 8, 0.5, reward_prompt_mean=1.1, eval_reward_mean=0.4)],
        # TRL's RLOO logs `reward`; four samples a step
        ("rloo", 0): [{"step": 1, "generated_responses": 8, "reward": -0.2}],
        ("rloo", 1): [{"step": 1, "generated_responses": 8, "reward": 0.2}],
        # SFT samples nothing while training: no curve
        ("sft", 0): [{"step": 1, "loss": 1.0}], ("sft", 1): [{"step": 1, "loss": 0.9}],
    }
    series = reward_series(["ple", "rloo", "sft"], [0, 1], metrics, ours="ple")
    assert list(series) == ["ple", "rloo"]
    assert series["ple"]["training"] == [(4, pytest.approx(0.2)), (8, pytest.approx(0.4))]
    assert series["ple"]["principle"] == [(4, pytest.approx(0.7)), (8, pytest.approx(0.9))]
    # Step 1's evaluation is seed 1's alone: a mean over the seeds that logged it.
    assert series["ple"]["held-out"] == [(4, pytest.approx(0.0)), (8, pytest.approx(0.3))]
    assert series["rloo"] == {"training": [(8, pytest.approx(0.0))], "held-out": []}


def test_reward_figure_draws_no_two_runs_of_a_large_grid_alike():
    from ple.compare.figures import run_style

    # The IMDb test stage has 13 trained runs; ten colours alone drew rloo and no_rank alike.
    styles = [tuple(sorted(run_style(i).items())) for i in range(30)]
    assert len(set(styles)) == 30
    assert all(style["linestyle"] != ":" for style in map(run_style, range(30)))  # y' dots


def test_choice_section_takes_the_best_reward_whose_guards_hold_on_every_seed():
    from types import SimpleNamespace

    from ple.compare.config import BASE, CompareConfig
    from ple.compare.results import Runs
    from ple.compare.selection import choice_section
    from ple.config import PLEConfig, RAFTConfig, TrainConfig

    configs = {"ple-1": PLEConfig(learning_rate=1e-4), "ple-2": PLEConfig(),
               "ple-3": PLEConfig(tau0=1.0), "ple-4": PLEConfig(tau0=2.0),
               "ple-5": PLEConfig(tau0=3.0), "raft": RAFTConfig(),
               "sft-1": TrainConfig(method="sft"),
               "sft-2": TrainConfig(method="sft", learning_rate=1e-3)}
    # (RM, base-PPL, distinct-2, assistant-speak) per seed; BASE's differ by seed.
    numbers = {BASE: [(0.0, 20.0, 0.8, 0.05), (0.1, 30.0, 0.9, 0.03)],
               "ple-1": [(0.3, 21.0, 0.8, 0.10), (0.3, 31.0, 0.9, 0.08)],   # held on both
               "ple-2": [(0.6, 35.0, 0.8, 0.05), (0.6, 50.0, 0.9, 0.03)],   # 1.75x, 1.67x
               # Its means would pass (distinct-2 0.79 against 0.85), but seed 1 drops 17 %.
               "ple-3": [(0.9, 20.0, 0.83, 0.05), (0.9, 30.0, 0.75, 0.03)],
               # Fluent and varied, but seed 0 speaks as an assistant 40 points more.
               "ple-4": [(1.2, 20.0, 0.8, 0.45), (1.2, 30.0, 0.9, 0.05)],
               # Base-PPL 0.6x BASE's on seed 1: collapsed onto what the base finds likely.
               "ple-5": [(1.0, 20.0, 0.8, 0.05), (1.0, 18.0, 0.9, 0.03)],
               "raft": [(0.4, 20.0, 0.8, 0.05), (0.4, 30.0, 0.9, 0.03)],
               # Neither setting holds (base-PPL 3.5x): no choice, and said so.
               "sft-1": [(0.2, 70.0, 0.8, 0.0), (0.2, 105.0, 0.9, 0.0)],
               "sft-2": [(0.1, 70.0, 0.8, 0.0), (0.1, 105.0, 0.9, 0.0)]}
    runs = object.__new__(Runs)
    runs.cfg = CompareConfig(methods={n: {} for n in configs}, seeds=[0, 1], task="imdb")
    runs.names = [BASE, *configs]
    runs.specs = {(n, s): SimpleNamespace(config=c) for n, c in configs.items() for s in (0, 1)}
    runs.evals = {(n, s): dict(zip(("reward_mean", "base_perplexity", "distinct_2",
                                    "assistant_speak"), v))
                  for n, values in numbers.items() for s, v in enumerate(values)}
    section = choice_section(runs)
    rows = {r[0]: r for r in section.blocks[1].rows}
    # raft has one run: nothing to choose
    assert set(rows) == {"ple-1", "ple-2", "ple-3", "ple-4", "ple-5", "sft-1", "sft-2"}
    assert rows["ple-1"][1:] == ["ple", "learning_rate 0.0001, tau0 0.2", "0.300", "1.04×",
                                 "+0.0 %", "+5.0 pp", "2/2", "chosen"]
    assert rows["ple-2"][2] == "learning_rate 0.0003, tau0 0.2"
    assert rows["ple-2"][7:] == ["0/2", ""] and rows["ple-3"][7:] == ["1/2", ""]
    assert rows["ple-4"][6:] == ["+21.0 pp", "1/2", ""]
    assert rows["ple-5"][4:] == ["0.76×", "+0.0 %", "+0.0 pp", "1/2", ""]
    assert rows["sft-1"][7:] == rows["sft-2"][7:] == ["0/2", "none held: no choice"]
    assert "the run's base-PPL is between 0.667 and 1.5 × BASE's" in section.blocks[0]


def test_report_only_reports_the_finished_runs_and_names_the_rest(first, tmp_path):
    """A study in progress: one method of the config has not run yet. --report-only trains
    nothing, reports the finished runs and names the missing one."""
    root, _ = first
    shutil.copytree(root / "out", tmp_path / "out")
    shutil.copy(root / "length_score.py", tmp_path)
    cfg = yaml.safe_load((root / "compare.yaml").read_text())
    cfg["methods"]["raft-slow"] = {"method": "raft", "raft_k": 2, "learning_rate": 0.01}
    # A discussion written after reading the tables goes first, a paragraph per block.
    cfg["discussion"] = "PLE leads <RAFT>.\nSame paragraph.\n\nA second paragraph."
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # A built-in reward's trained model is named beside the reward (eval.json's reward_model).
    base = tmp_path / "out/base/seed0/eval.json"
    base.write_text(json.dumps({**json.loads(base.read_text()), "reward_model": "rm-0a1b2c"}))
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reward vader (trained model rm-0a1b2c); evaluated on" in \
        (tmp_path / "out/report.md").read_text()
    assert "(not finished yet: raft-slow)" in result.stdout
    assert not (tmp_path / "out/runs/raft-slow").exists()
    md = (tmp_path / "out/report.md").read_text()
    assert "\n## Discussion\n\nPLE leads &lt;RAFT&gt;. Same paragraph.\n\nA second " \
           "paragraph.\n\n## Results" in md
    assert "not finished yet, so in no table: raft-slow." in md
    assert list(markdown_table(md, "imdb: methods")) == ["BASE", "ple", "raft"]
    # The finished runs were all judged, so their win rates stay; one missing drops them.
    assert list(markdown_table(md, "win / tie / lose (%) of ours")) == ["ple vs raft",
                                                                       "ple vs base"]
    (tmp_path / "out/winrates/seed1/ple-vs-raft.json").unlink()
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    assert "(not finished yet: raft-slow, the win rates)" in result.stdout

    # A seed of ours not finished yet: the report is of the other seeds, raft included.
    shutil.rmtree(tmp_path / "out/runs/ple/seed1")
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(not finished yet: seed 1, raft-slow)" in result.stdout
    md = (tmp_path / "out/report.md").read_text()
    assert list(markdown_table(md, "imdb: methods")) == ["BASE", "ple", "raft"]
    assert "one seed (0)" in md
    shutil.rmtree(tmp_path / "out/runs/ple/seed0")
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "ple: error: --report-only: `ple` (ours) and the base model are " \
                            "not both evaluated for any seed yet in out; nothing to report\n"


def test_eval_json_older_than_kl_and_assistant_speak_still_reports(first, tmp_path):
    """A study evaluated before eval.json held kl_mean, kl_se and assistant_speak (the
    committed IMDb runs): --report-only shows its KL as missing (the weights are needed to
    measure it) and takes assistant-speak from each run's eval_samples.jsonl, for the column
    and for the guard."""
    from ple.evaluation.metrics import assistant_speak_share

    root, _ = first
    shutil.copytree(root / "out", tmp_path / "out")
    for name in ("length_score.py", "compare.yaml"):
        shutil.copy(root / name, tmp_path)
    out = tmp_path / "out"
    for path in out.glob("**/seed*/eval.json"):
        old = {k: v for k, v in json.loads(path.read_text()).items()
               if k not in ("kl_mean", "kl_se", "assistant_speak")}
        path.write_text(json.dumps(old))
    # raft's seed 0 drifts into the assistant register: every response.
    samples = out / "runs/raft/seed0/eval_samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    samples.write_text("".join(json.dumps({**r, "response": "I'm so glad you enjoyed it!"})
                               + "\n" for r in rows))
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    main = markdown_table((out / "report.md").read_text(), "imdb: methods")
    shares = {}
    for label, run in (("BASE", "base/seed{}"), ("ple", "runs/ple/seed{}"),
                       ("raft", "runs/raft/seed{}")):
        shares[label] = [assistant_speak_share([json.loads(line)["response"] for line in open(
            out / run.format(s) / "eval_samples.jsonl")]) for s in SEEDS]
        assert main[label][2] == "–"  # KL
        assert main[label][6] == expected([100 * v for v in shares[label]], 1)
    assert shares["raft"][0] == 1.0
    evals = [json.loads((out / f"runs/raft/seed{s}/eval.json").read_text()) for s in SEEDS]
    bases = [json.loads((out / f"base/seed{s}/eval.json").read_text()) for s in SEEDS]
    seed1 = 1 / 1.5 <= evals[1]["base_perplexity"] / bases[1]["base_perplexity"] <= 1.5 \
        and evals[1]["distinct_2"] >= 0.9 * bases[1]["distinct_2"] \
        and shares["raft"][1] <= shares["BASE"][1] + 0.1
    assert main["raft"][7] == f"{int(seed1)}/2"  # seed 0's guard broke


def test_the_report_shows_the_choice_tables_of_its_tuning_stages(first, tmp_path):
    """`tuning`: the test stage's report shows the grid each setting was chosen from, with
    its guards per seed, from the tuning config's finished runs, and no choice of its own
    among its two RAFT-4 runs (that would be a choice on test)."""
    root, _ = first
    shutil.copytree(root / "out", tmp_path / "out")
    shutil.copytree(root / "out", tmp_path / "tune")
    shutil.copy(root / "length_score.py", tmp_path)
    shutil.copytree(tmp_path / "tune/runs/raft", tmp_path / "tune/runs/raft-fast")
    # Tiny models' numbers put the guards anywhere: set the two rates' evaluations by hand.
    for name, seed, rm, drop in (("raft", 0, 0.5, 0.0), ("raft", 1, 0.5, 0.0),
                                 ("raft-fast", 0, 0.9, 0.0), ("raft-fast", 1, 0.9, 0.5)):
        base = json.loads((tmp_path / f"tune/base/seed{seed}/eval.json").read_text())
        path = tmp_path / f"tune/runs/{name}/seed{seed}/eval.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "reward_mean": rm,
                                    "base_perplexity": base["base_perplexity"],
                                    "distinct_2": (1 - drop) * base["distinct_2"],
                                    "assistant_speak": base["assistant_speak"]}))
    cfg = yaml.safe_load((root / "compare.yaml").read_text())
    tune = {k: v for k, v in cfg.items() if k not in ("winrate", "ablations")}
    tune["output_dir"] = "tune"
    tune["methods"] = {**cfg["methods"],
                       "raft-slow": {**cfg["methods"]["raft"], "learning_rate": 0.001},
                       "raft-fast": {**cfg["methods"]["raft"], "learning_rate": 0.5}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tune, sort_keys=False))
    shutil.copytree(tmp_path / "tune/runs/raft-fast", tmp_path / "out/runs/raft-fast")
    test_stage = {**cfg, "tuning": ["tune.yaml"],
                  "methods": {**cfg["methods"], "raft-fast": tune["methods"]["raft-fast"]}}
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(test_stage, sort_keys=False))
    result = run_ple("compare", "--config", "compare.yaml", "--report-only", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    md = (tmp_path / "out/report.md").read_text()
    assert "raft-fast" in markdown_table(md, "imdb: methods")
    assert "## Choice of settings" not in md
    section = md.split("\n## Tuning: tune.yaml\n", 1)[1].split("\n## ", 1)[0]
    assert "choices on the 4 queries of" in section and "(seeds 0, 1), the runs of " \
        "tune.yaml (its report: tune/report.md)" in section
    rows = markdown_table(section, "imdb: settings per method")
    assert list(rows) == ["raft", "raft-fast"]
    assert rows["raft"][1:] == ["learning_rate 0.05", "0.500", "1.00×", "+0.0 %", "+0.0 pp",
                                "2/2", "chosen"]
    # Higher reward, but seed 1 lost half its distinct-2: not chosen.
    assert rows["raft-fast"][2:] == ["0.900", "1.00×", rows["raft-fast"][4], "+0.0 pp", "1/2",
                                     ""]
    assert "Not finished yet, so in no table: raft-slow." in section
    assert not (tmp_path / "tune/runs/raft-slow").exists()


def test_a_method_at_fewer_seeds_is_trained_and_reported_at_its_own(first, tmp_path):
    """method_seeds: raft and the no_wsft ablation at seed 0 only, as a study runs its
    cheaper baselines. Their seed 1 is never trained; their rows and ours minus them are seed
    0's, with the interval over the test responses (1.96 SE), and the report says so; ours
    keeps both seeds."""
    from ple.compare.config import load_compare_config, run_specs
    from ple.evaluation.metrics import paired_difference

    root, _ = first
    shutil.copytree(root / "out", tmp_path / "out")
    shutil.copy(root / "length_score.py", tmp_path)
    shutil.rmtree(tmp_path / "out/runs/raft/seed1")
    shutil.rmtree(tmp_path / "out/runs/no_wsft/seed1")
    cfg = yaml.safe_load((root / "compare.yaml").read_text())
    cfg["method_seeds"] = {"raft": [0], "no_wsft": [0]}
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    specs = run_specs(load_compare_config(str(tmp_path / "compare.yaml")))
    assert sorted((s.name, s.seed) for s in specs) == [
        ("no_wsft", 0), ("ple", 0), ("ple", 1), ("raft", 0)]
    result = run_ple("compare", "--config", "compare.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert not (out / "runs/raft/seed1").exists() and not (out / "runs/no_wsft/seed1").exists()
    md = (out / "report.md").read_text()
    assert "raft, no_wsft: seed 0 only, so that seed's numbers" in md
    for table, name, label in (("imdb: methods", "raft", "raft"),
                               ("imdb: ablations", "no_wsft", "no_wsft: w/o L_weighted-sft")):
        run = json.loads((out / f"runs/{name}/seed0/eval.json").read_text())
        mean, half = run["reward_mean"], 1.96 * run["reward_se"]
        assert markdown_table(md, table)[label][1] == \
            f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"
    main = markdown_table(md, "imdb: methods")
    assert main["ple"][1] == interval(
        [json.loads((out / f"runs/ple/seed{s}/eval.json").read_text()) for s in SEEDS],
        lambda e: {"mean": e["reward_mean"]})
    scores = [{r["query"]: r["reward"] for r in map(json.loads, (
        out / f"runs/{name}/seed0/eval_samples.jsonl").read_text().splitlines())}
        for name in ("ple", "raft")]
    mean, se, _ = paired_difference(*scores)
    paired = markdown_table(md, "imdb: ours minus each run")
    assert paired["ple − raft"][0] == \
        f"{mean:+.3f} [{mean - 1.96 * se:+.3f}, {mean + 1.96 * se:+.3f}]"
    assert list(markdown_table(md, "win / tie / lose (%) of ours")) == ["ple vs raft",
                                                                       "ple vs base"]


def test_runs_kept_for_their_results_only_are_reused_and_never_evaluated_anew(first,
                                                                            tmp_path):
    """A study committed without its weights (.gitignore keeps the adapters, checkpoints and
    training samples under docs/results/ out of git), cloned on another machine: its runs
    are finished, nothing trains again; an evaluation they did not measure is refused
    before anything runs."""
    root, _ = first
    shutil.copytree(root / "out", tmp_path / "out")
    for name in ("length_score.py", "compare.yaml"):
        shutil.copy(root / name, tmp_path)
    for run in (tmp_path / "out/runs").glob("*/seed*"):
        for gone in ("adapter", *(p.name for p in run.glob("checkpoint-*")), "samples.jsonl"):
            shutil.rmtree(run / gone) if (run / gone).is_dir() else (run / gone).unlink()
    kept = snapshot(tmp_path / "out/runs")
    result = run_ple("compare", "--config", "compare.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("reused the finished run") == 6
    assert "training in" not in result.stdout and "evaluating" not in result.stdout
    assert snapshot(tmp_path / "out/runs") == kept

    # An evaluation with another reward model is measured again (the base model's); a run
    # trained with another is refused before anything runs: a study never mixes rewards.
    for path in (tmp_path / "out/base/seed0/eval.json",
                 tmp_path / "out/runs/raft/seed1/summary.json"):
        saved = json.loads(path.read_text())
        path.write_text(json.dumps({**saved, "reward_model": "vader-000000000000"}))
    whole = snapshot(tmp_path / "out")
    result = run_ple("compare", "--config", "compare.yaml", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert re.match(r"ple: error: compare\.yaml:\d+: raft seed 1: out/runs/raft/seed1 was "
                    r"trained with reward model vader-000000000000, not the `vader` of this "
                    r"code \(no trained model;",
                    result.stderr), result.stderr
    assert snapshot(tmp_path / "out") == whole
    summary = tmp_path / "out/runs/raft/seed1/summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "reward_model": None}))
    result = run_ple("compare", "--config", "compare.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("evaluating") == 1 and "base seed 0: evaluating" in result.stdout

    cfg = yaml.safe_load((tmp_path / "compare.yaml").read_text())
    cfg["eval"]["max_new_tokens"] = 5
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    whole = snapshot(tmp_path / "out")
    result = run_ple("compare", "--config", "compare.yaml", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert re.match(r"ple: error: compare\.yaml:\d+: ple seed 0: out/runs/ple/seed0 holds "
                    r"the run's results but not its adapter, and its eval\.json measured "
                    r"another evaluation", result.stderr), result.stderr
    assert snapshot(tmp_path / "out") == whole


def test_jobs_trains_runs_in_worker_processes_with_a_share_of_the_threads(first, tmp_path,
                                                                          capfd):
    """--jobs 2: the two missing runs train and are evaluated in two worker processes, each
    with half of torch's threads, as quiet as the command; the finished runs are reused."""
    import torch

    root, _ = first
    shutil.copytree(root / "out", tmp_path / "out")
    for name in ("length_score.py", "compare.yaml"):
        shutil.copy(root / name, tmp_path)
    for run in ("ple/seed1", "raft/seed1"):
        shutil.rmtree(tmp_path / "out/runs" / run)
    kept = snapshot(tmp_path / "out/runs/ple/seed0")
    # Twice (cores + 1) threads here, so each worker's share is a count no process gets by
    # default (that is at most the cores, and 1 under `make test`).
    share = os.cpu_count() + 1
    threads = torch.get_num_threads()
    torch.set_num_threads(2 * share)
    try:
        result = run_ple("compare", "--config", "compare.yaml", "--jobs", "2", cwd=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert result.returncode == 0, result.stderr[-3000:]
    workers = capfd.readouterr()  # what the workers wrote, on the process's own stdout/err
    assert "ple compare: raft seed 1: training in" in workers.out
    assert "Warning" not in workers.err and "100%|" in workers.err
    for run in ("ple/seed1", "raft/seed1"):
        summary = json.loads((tmp_path / "out/runs" / run / "summary.json").read_text())
        assert summary["torch_threads"] == share
        assert (tmp_path / "out/runs" / run / "eval.json").is_file()
    assert snapshot(tmp_path / "out/runs/ple/seed0") == kept
    assert "ple" in markdown_table((tmp_path / "out/report.md").read_text(), "imdb: methods")


def test_a_run_failing_in_a_worker_stops_the_study_with_its_line(tmp_path, monkeypatch):
    # The reward is fine in this process (the base model's evaluation) and NaN in workers.
    monkeypatch.setenv("PLE_TEST_PARENT_PID", str(os.getpid()))
    (tmp_path / "worker_nan.py").write_text(
        "import math, os\n"
        "def score(prompts, completions):\n"
        "    ok = os.getpid() == int(os.environ['PLE_TEST_PARENT_PID'])\n"
        "    return [0.0 if ok else math.nan for _ in completions]\n")
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg.update(output_dir="out", reward="worker_nan:score", seeds=[0],
               methods={"ple": cfg["methods"]["ple"], "raft": cfg["methods"]["raft"]})
    for unused in ("winrate", "ablations"):
        del cfg[unused]
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    result = run_ple("compare", "--config", "compare.yaml", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    # After the base model's progress bars, one line and no traceback.
    lines = [x for x in re.split(r"[\r\n]+", result.stderr) if x.strip()]
    assert lines[-1].startswith("ple: error: reward `worker_nan:score` gave nan for query")
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    assert not (tmp_path / "out/report.md").exists()
