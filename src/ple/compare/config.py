"""compare.yaml: which methods and ablations `ple compare` runs, with which seeds, and how it
evaluates and judges them. Read and checked whole before anything trains; every mistake
names the file and line.

    task: imdb                  # one task, model and reward for every run
    model: default
    reward: vader
    seeds: [0, 1]
    output_dir: runs/compare
    common: {learning_rate: 3.0e-4}          # config fields of every run
    methods:                                 # name -> config fields of that method
      ple: {method: ple, max_steps: 10}
      raft: {method: raft, max_steps: 5, raft_k: 4}
    ablations:                               # name -> fields on top of `ours`'s
      no_rank: {ablation: no_rank}
    eval: {n: 32, test_data: ../shared/data/imdb/test.jsonl}   # EvalConfig fields
    winrate: {judge: reward, reward: vader}  # as `ple winrate` takes them

Run `name` with seed k lives in OUTPUT_DIR/runs/<name>/seed<k>/ (a `ple train` output
directory, with eval.json beside), the base model's evaluation in OUTPUT_DIR/base/seed<k>/.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ple.config import FIELDS, TrainConfig, check_method_keys, coerce, yaml_mapping
from ple.errors import UserError
from ple.evaluation.evaluate import EvalConfig
from ple.evaluation.evaluate import validate as validate_eval
from ple.tasks import TASKS

# Every run of a comparison shares these; compare sets them from its top level.
SET_PER_RUN = ("task", "model", "reward", "reward_label", "seed", "output_dir")
# An evaluation measures what its run was trained on, as its run was prompted.
EVAL_SET_PER_RUN = ("model", "adapter", "task", "reward", "reward_label", "seed",
                    "output_dir", "chat_template")
EVAL_FIELDS = [f.name for f in dataclasses.fields(EvalConfig) if f.name not in EVAL_SET_PER_RUN]
JUDGES = ("reward", "llm", "http")
BASE = "base"  # the row of the untrained model; no method may take its name
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _doc(text: str) -> dict:
    return {"help": text}


@dataclass
class JudgeSpec:
    """The `winrate` section: the judge of `ple winrate`, with the names of its flags."""

    judge: str = field(metadata=_doc(
        "reward (the higher reward wins), llm (a local causal LM reads the paper's judging "
        "prompt) or http (an OpenAI-compatible API; key in $PLE_JUDGE_API_KEY). Required. "
        "Paper: Claude Sonnet, i.e. http."))
    reward: str | None = field(default=None, metadata=_doc(
        "judge reward: its reward spec (`vader`, a reward-model directory, module:function)."))
    reward_label: int = field(default=1, metadata=_doc(
        "judge reward: the logit a classifier reward reads. Default 1."))
    judge_model: str | None = field(default=None, metadata=_doc(
        "judge llm: a model as --model takes it; judge http: the API's model name."))
    base_url: str | None = field(default=None, metadata=_doc(
        "judge http: the API's base URL (requests go to BASE/chat/completions)."))
    timeout: float = field(default=60.0, metadata=_doc(
        "judge http: seconds to wait for each answer. Default 60."))


@dataclass
class FrontierSpec:
    """The `frontier` section: the reward-KL frontier report (frontier.md beside
    report.md, ple.compare.frontier), each curve a method swept over its strength."""

    curves: dict[str, list[str]] = field(metadata=_doc(
        "Curve name -> its runs (methods or ablations of this config), from the least to "
        "the most pull toward the reward, e.g. `dpo: [dpo-beta3, dpo-beta1, dpo-beta0.3]`; "
        "the figure joins them in KL order. A curve of one run (SFT, which has no strength "
        "toward the reward) is a single point. A run is on one curve at most. Required."))
    kl_levels: list[float] = field(default_factory=list, metadata=_doc(
        "The KLs (nats, increasing, > 0) at which the matched-KL table reads each curve "
        "(linear in log KL between neighbouring points, never extrapolated). Default: the "
        "quartiles of the pooled KLs of every point, in log KL, to two significant "
        "figures."))
    choose_at_kl: float | None = field(default=None, metadata=_doc(
        "A search among variants (a tuning stage): every curve then has exactly two runs, "
        "and the report reads each curve's reward at this KL (nats) on the line through "
        "its two points in log KL and names the best: the highest among the curves whose "
        "two points both hold the guards on every seed. Default none (no search). The "
        "PLE search of issue 34: 2."))
    # Filled by _frontier: "file:line" of each key and curve, for messages.
    where: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class CompareConfig:
    """Everything one `ple compare` needs."""

    methods: dict[str, dict] = field(metadata=_doc(
        "Name -> config fields of that run (over `common`), e.g. `sft: {method: sft, "
        "data: ...}`. Names are directory names; `base` is taken by the untrained model. "
        "Required; must hold `ours`. Paper (Tables 1-3): SFT, DPO, PPO, RAFT-4 and PLE."))
    task: str = field(default="imdb", metadata=_doc("Task of every run: hh, imdb or tldr. "
                                                    "Default imdb."))
    model: str = field(default="default", metadata=_doc(
        "Base model of every run, as `ple train --model` takes it. Default `default`."))
    reward: str | None = field(default=None, metadata=_doc(
        "Reward of every run and of the evaluation (the RM column), as `ple train --reward` "
        "takes it. Default: the task's offline reward (vader for imdb)."))
    reward_label: int = field(default=1, metadata=_doc(
        "For a classifier reward: which label's logit is the reward. Default 1."))
    seeds: list[int] = field(default_factory=lambda: [0], metadata=_doc(
        "Every run is trained and evaluated once per seed; with several, tables give the "
        "mean over seeds with its 95 % interval. Default [0]. The paper reports one run."))
    method_seeds: dict[str, list[int]] = field(default_factory=dict, metadata=_doc(
        "Run name (a method other than `ours`, or an ablation) -> its seeds, for a run at "
        "fewer seeds than `seeds` (a subset holding the first seed). Its rows are over its "
        "own seeds, and ours minus it over the seeds both have. Default: every run at every "
        "seed. The issue-14 study runs the baselines other than RAFT-4 at one seed, and "
        "keeps runs of an earlier choice at the seeds they had when ours gets more."))
    output_dir: str = field(default="runs/compare", metadata=_doc(
        "Where runs, evaluations, win rates, report.md and report.html go. Finished runs "
        "found there with the same config are reused. Default runs/compare."))
    ours: str = field(default="ple", metadata=_doc(
        "The method the others are compared with: the win rates are ours vs every other "
        "method and the base model (Figure 2), and ablations start from its config "
        "(Tables 4-5). Default ple."))
    common: dict = field(default_factory=dict, metadata=_doc(
        "Config fields shared by every run, so each must be a setting of every method run "
        "(a method's own fields win). Default none."))
    ablations: dict[str, dict] = field(default_factory=dict, metadata=_doc(
        "Name -> config fields over `ours`'s config, e.g. `no_rank: {ablation: "
        "no_rank}`; `ours` must then be a ple method. Default none. Paper: w/o L_rank and "
        "w/o L_weighted-sft."))
    eval: dict = field(default_factory=dict, metadata=_doc(
        "EvalConfig fields (`ple eval --help`): n, test_data, greedy, max_new_tokens, "
        "temperature, top_p, top_k, max_prompt_tokens, max_reference_tokens, batch_size. "
        "Model, adapter, task, reward, seed and chat template come from each run. Default: "
        "ple eval's defaults (64 built-in held-out queries: no references, so no PPL, BLEU)."))
    winrate: JudgeSpec | None = field(default=None, metadata=_doc(
        "The judge of the win rates (JudgeSpec). Default: none, no win rates (an API judge "
        "costs money; a judge that is the training reward is circular, so it is not implied)."))
    paper: dict[str, float] = field(default_factory=dict, metadata=_doc(
        "Run name (or `base`) -> the paper's reward-model score for that method, shown "
        "beside ours in the results and ablation tables. Default none. Paper, Table 2 "
        "(IMDb): base -0.41, SFT -0.29, DPO 0.92, RAFT-4 1.00, PPO 1.02, PLE 1.33; "
        "Table 4: w/o L_rank 0.86, w/o L_wsft 0.95."))
    tuning: list[str] = field(default_factory=list, metadata=_doc(
        "Compare configs of the tuning stages (grids of settings on a validation split) "
        "whose choices this config's runs take; the report shows each one's choice table, "
        "of its finished runs, under Tuning. Paths from where ple compare runs. Default "
        "none."))
    frontier: FrontierSpec | None = field(default=None, metadata=_doc(
        "The reward-KL frontier report (FrontierSpec): curves of runs, written to "
        "frontier.md and frontier.html under output_dir and linked from report.md. "
        "Default none."))
    discussion: str = field(default="", metadata=_doc(
        "What the results show, in paragraphs separated by blank lines, put first in the "
        "report under Discussion. Written after reading the tables; `--report-only` "
        "rewrites the report with it. Default none."))
    # Filled by load_compare_config: "file:line" of each key and entry, for messages.
    where: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def run_dir(self, name: str, seed: int) -> Path:
        """Where run `name` (or the base model's evaluation, for BASE) of a seed lives."""
        if name == BASE:
            return Path(self.output_dir) / BASE / f"seed{seed}"
        return Path(self.output_dir) / "runs" / name / f"seed{seed}"

    def winrate_file(self, opponent: str, seed: int) -> Path:
        name = f"{self.ours}-vs-{opponent}.json"
        return Path(self.output_dir) / "winrates" / f"seed{seed}" / name

    def seeds_of(self, name: str) -> list[int]:
        """The seeds run `name` (a method, an ablation or BASE) is trained and evaluated with."""
        return self.method_seeds.get(name, self.seeds)

    def opponents(self) -> list[str]:
        """Whom `ours` is judged against: every other method, then the base model."""
        return [name for name in self.methods if name != self.ours] + [BASE]

    def eval_config(self, seed: int, output_dir: Path, adapter: Path | None,
                    chat_template: bool | None) -> EvalConfig:
        return EvalConfig(**self.eval, model=self.model, task=self.task, reward=self.reward,
                          reward_label=self.reward_label, seed=seed,
                          adapter=str(adapter) if adapter else None,
                          output_dir=str(output_dir), chat_template=chat_template)


@dataclass(frozen=True)
class RunSpec:
    name: str
    kind: str  # "method" or "ablation"
    seed: int
    config: TrainConfig
    where: str  # "file:line" of its entry


def _entries(node, where: str, what: str):
    """(key, value node, "file:line") of a mapping node; refuses a repeated key."""
    path = where.rsplit(":", 1)[0]
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return []
    if not isinstance(node, yaml.MappingNode):
        raise UserError(f"{where}: `{what}` must be a mapping of key: value")
    seen, entries = {}, []
    for key_node, value_node in node.value:
        key, line = str(key_node.value), f"{path}:{key_node.start_mark.line + 1}"
        if key in seen:
            raise UserError(f"{line}: `{key}` repeats the one at {seen[key]}")
        seen[key] = line
        entries.append((key, value_node, line))
    return entries


def _value(node):
    return yaml.safe_load(yaml.serialize(node))


def check_type(hint, value, key: str, where: str):
    """`value` if it has the type `hint` (str, int, float, bool, list[int] or list[str],
    each possibly optional); ints are accepted where floats are."""
    options = typing.get_args(hint)
    if type(None) in options:
        if value is None:
            return None
        (hint,) = [h for h in options if h is not type(None)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (list[int], list[str]):
        (item,) = typing.get_args(hint)
        ok = isinstance(value, list) and all(type(v) is item for v in value)
        wanted = f"a list of {'integers' if item is int else 'strings'}"
    else:
        ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
        wanted = {str: "a string", int: "an integer", float: "a number",
                  bool: "true or false"}[hint]
    if not ok:
        raise UserError(f"{where}: `{key}` must be {wanted}, got {value!r}")
    return value


def _typed_section(node, where: str, what: str, cls, allowed: list[str],
                   set_elsewhere: tuple[str, ...]) -> dict:
    """The fields of dataclass `cls` a section gives, type-checked."""
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value_node, line in _entries(node, where, what):
        if key in set_elsewhere:
            raise UserError(f"{line}: `{what}.{key}` is set by ple compare for each run")
        if key not in allowed:
            raise UserError(f"{line}: unknown key `{what}.{key}` (known: {', '.join(allowed)})")
        values[key] = check_type(hints[key], _value(value_node), key, line)
    return values


def _run_fields(node, where: str, what: str) -> dict:
    """Config fields of `common` or of one method or ablation, type-checked (whether they
    are settings of the run's method is checked when its config is made)."""
    values = {}
    for key, value_node, line in _entries(node, where, what):
        if key in SET_PER_RUN:
            top = "seeds" if key == "seed" else key
            raise UserError(f"{line}: `{what}.{key}`: set `{top}` at the top level (it is "
                            f"the same for every run)")
        if key not in FIELDS:
            raise UserError(f"{line}: unknown config key `{what}.{key}` (the fields: see "
                            f"`ple train --method NAME --help`)")
        values[key] = coerce(key, _value(value_node), line)
    return values


def _named_runs(node, where: str, what: str, cfg_where: dict) -> dict[str, dict]:
    runs = {}
    for name, value_node, line in _entries(node, where, what):
        if not NAME.fullmatch(name) or name == BASE:
            raise UserError(f"{line}: `{what}.{name}`: a run name is a directory name of "
                            f"letters, digits, _ . - (not `{BASE}`, the untrained model's)")
        cfg_where[f"{what}.{name}"] = line
        runs[name] = _run_fields(value_node, line, f"{what}.{name}")
    return runs


def _frontier(node, where: str) -> FrontierSpec:
    """The `frontier` section, each key type-checked; which runs it names is checked
    against the methods in _check."""
    values, lines = {}, {}
    known = [f.name for f in dataclasses.fields(FrontierSpec) if f.name != "where"]
    for key, value_node, line in _entries(node, where, "frontier"):
        if key not in known:
            raise UserError(f"{line}: unknown key `frontier.{key}` (known: {', '.join(known)})")
        lines[key] = line
        if key == "curves":
            values[key] = {}
            for curve, runs, at in _entries(value_node, line, "frontier.curves"):
                runs = _value(runs)
                if curve == BASE or not isinstance(runs, list) or not runs or \
                        not all(isinstance(r, str) for r in runs):
                    raise UserError(f"{at}: `frontier.curves.{curve}` must be a non-empty "
                                    f"list of run names (and the curve not named `{BASE}`), "
                                    f"got {runs!r}")
                values[key][curve] = runs
                lines[f"curves.{curve}"] = at
        elif key == "kl_levels":
            levels = _value(value_node)
            if not isinstance(levels, list) or not levels or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                    for v in levels) or levels != sorted(set(levels)):
                raise UserError(f"{line}: `frontier.kl_levels` must be a list of increasing "
                                f"KLs > 0 (nats), got {levels!r}")
            values[key] = [float(v) for v in levels]
        else:
            value = check_type(float | None, _value(value_node), f"frontier.{key}", line)
            if value is not None and value <= 0:
                raise UserError(f"{line}: `frontier.choose_at_kl` must be a KL > 0 (nats), "
                                f"got {value}")
            values[key] = value
    if "curves" not in values:
        raise UserError(f"{where}: `frontier` needs `curves` (curve name -> its runs)")
    return FrontierSpec(**values, where=lines)


def load_compare_config(path: str) -> CompareConfig:
    """Read and check a compare.yaml, including every run's resolved config."""
    root = yaml_mapping(path)
    if root is None:
        raise UserError(f"{path}: empty; a compare config needs at least `methods`")
    hints = typing.get_type_hints(CompareConfig)
    known = [f.name for f in dataclasses.fields(CompareConfig) if f.name != "where"]
    values, where = {}, {}
    for key, node, line in _entries(root, f"{path}:1", "compare config"):
        if key not in known:
            raise UserError(f"{line}: unknown key `{key}` (known: {', '.join(known)})")
        where[key] = line
        if key in ("methods", "ablations"):
            values[key] = _named_runs(node, line, key, where)
        elif key == "common":
            values[key] = _run_fields(node, line, key)
        elif key == "eval":
            values[key] = _typed_section(node, line, key, EvalConfig, EVAL_FIELDS,
                                         EVAL_SET_PER_RUN)
        elif key == "method_seeds":
            values[key] = {name: check_type(list[int], _value(v), f"method_seeds.{name}", at)
                           for name, v, at in _entries(node, line, key)}
        elif key == "paper":
            values[key] = {name: check_type(float, _value(v), f"paper.{name}", at)
                           for name, v, at in _entries(node, line, key)}
        elif key == "winrate":
            fields = [f.name for f in dataclasses.fields(JudgeSpec)]
            judge = _typed_section(node, line, key, JudgeSpec, fields, ())
            if "judge" not in judge:
                raise UserError(f"{line}: `winrate` needs `judge` ({', '.join(JUDGES)})")
            values[key] = JudgeSpec(**judge)
        elif key == "frontier":
            values[key] = _frontier(node, line)
        else:
            values[key] = check_type(hints[key], _value(node), key, line)
    if "methods" not in values:
        raise UserError(f"{path}: no `methods` (name -> config of each method compared)")
    cfg = CompareConfig(**values, where=where)
    _check(cfg, path)
    run_specs(cfg)
    return cfg


def _check(cfg: CompareConfig, path: str) -> None:
    """The rules between keys; each failure names the line of the key at fault."""
    def need(ok: bool, key: str, rule: str):
        if not ok:
            raise UserError(f"{cfg.where.get(key, path)}: `{key}`: {rule}")

    need(cfg.task in TASKS, "task", f"must be one of {', '.join(TASKS)}")
    need(len(cfg.seeds) >= 1 and len(set(cfg.seeds)) == len(cfg.seeds), "seeds",
         "must be one or more distinct integers")
    need(cfg.ours in cfg.methods, "ours" if "ours" in cfg.where else "methods",
         f"no method named `{cfg.ours}` (the one the others are compared with)")
    unknown = sorted(set(cfg.paper) - {BASE, *cfg.methods, *cfg.ablations})
    need(not unknown, "paper", f"`{', '.join(unknown)}` is no run of this config (the "
         f"methods, the ablations and `{BASE}`)")
    for name, seeds in cfg.method_seeds.items():
        need((name in cfg.methods or name in cfg.ablations) and name != cfg.ours,
             "method_seeds", f"`{name}` is no method or ablation of this config other than "
             f"`{cfg.ours}` (ours, whose seeds are `seeds`)")
        need(seeds[:1] == cfg.seeds[:1] and set(seeds) <= set(cfg.seeds)
             and len(set(seeds)) == len(seeds), "method_seeds",
             f"{name}: {seeds} must be distinct seeds of `seeds` ({cfg.seeds}) beginning with "
             f"the first, {cfg.seeds[0]}")
    for stage in cfg.tuning:
        need(Path(stage).is_file(), "tuning", f"{stage}: no such compare config")
    twice = sorted(set(cfg.methods) & set(cfg.ablations))
    need(not twice, "ablations", f"`{', '.join(twice)}` is also a method; names must differ")
    try:
        validate_eval(cfg.eval_config(cfg.seeds[0], Path(cfg.output_dir), None, None))
    except UserError as e:
        raise UserError(f"{cfg.where.get('eval', path)}: eval: {e}") from None
    if cfg.frontier is not None:
        _check_frontier(cfg.frontier, {*cfg.methods, *cfg.ablations})
    if cfg.winrate is not None:
        w = cfg.winrate
        need(w.judge in JUDGES, "winrate", f"judge must be one of {', '.join(JUDGES)}")
        needed = {"reward": ["reward"], "llm": ["judge_model"],
                  "http": ["judge_model", "base_url"]}[w.judge]
        missing = [k for k in needed if getattr(w, k) is None]
        need(not missing, "winrate", f"judge {w.judge} needs {' and '.join(missing)}")
        need(w.timeout > 0, "winrate", "timeout must be > 0")


def _check_frontier(spec: FrontierSpec, runs: set[str]) -> None:
    """Every run of a curve is one of the config's, on one curve only; a search's curves
    have two runs each (the line it reads)."""
    seen = {}
    for curve, members in spec.curves.items():
        at = spec.where[f"curves.{curve}"]
        for run in members:
            if run not in runs:
                raise UserError(f"{at}: `frontier.curves.{curve}`: `{run}` is no method or "
                                f"ablation of this config")
            if run in seen:
                raise UserError(f"{at}: `frontier.curves.{curve}`: `{run}` is on curve "
                                f"`{seen[run]}` already")
            seen[run] = curve
        if spec.choose_at_kl is not None and len(members) != 2:
            raise UserError(f"{at}: `frontier.curves.{curve}`: with `frontier.choose_at_kl` "
                            f"every curve is two runs (the line the search reads), it has "
                            f"{len(members)}")


def run_specs(cfg: CompareConfig) -> list[RunSpec]:
    """Every (run, seed) with its resolved, validated config: seed by seed, methods in the
    file's order, then ablations (each on top of `ours`'s fields)."""
    specs = []
    for seed in cfg.seeds:
        for kind, runs in (("method", cfg.methods), ("ablation", cfg.ablations)):
            for name, fields in runs.items():
                if seed not in cfg.seeds_of(name):
                    continue
                where = cfg.where[f"{kind}s.{name}"]
                start = cfg.methods[cfg.ours] if kind == "ablation" else {}
                values = {**cfg.common, **start, **fields, "task": cfg.task,
                          "model": cfg.model, "reward": cfg.reward,
                          "reward_label": cfg.reward_label, "seed": seed,
                          "output_dir": str(cfg.run_dir(name, seed))}
                if kind == "ablation" and values.get("method", "ple") != "ple":
                    raise UserError(f"{where}: ablations.{name}: ablations are of PLE, but "
                                    f"`ours` ({cfg.ours}) is method {values['method']}")
                try:
                    config = check_method_keys(values, {})(**values)
                except UserError as e:
                    raise UserError(f"{where}: {kind}s.{name}: {e}") from None
                if not config.use_lora:
                    raise UserError(f"{where}: {kind}s.{name}: use_lora false: ple compare "
                                    f"evaluates LoRA adapters on the base model, so that the "
                                    f"base model's perplexity guard is measured")
                specs.append(RunSpec(name, kind, seed, config, where))
    return specs
