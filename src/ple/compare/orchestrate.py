"""`ple compare --config compare.yaml`: train every method and ablation with every seed,
evaluate each run and the base model on the same test queries, judge ours against the
others, and write report.md and report.html (see ple.compare.report).

Whatever can be checked is checked before the first run trains: the config, each run's
data, the test split, and the runs already in the output directory. A finished run of the
same config is reused, not retrained; an unfinished one (a study stopped midway) continues
from its newest checkpoint where its method can; a run of another config is refused, never
mixed in.
Evaluations and win-rate reports are reused while what they measured is unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from ple.compare.config import (BASE, CompareConfig, RunSpec, load_compare_config,
                                run_specs)
from ple.compare.study import finished_part, write_whole
from ple.config import load_config
from ple.errors import UserError
from ple.evaluation.evaluate import EVAL_FILES, EvalConfig
from ple.methods import METHODS
from ple.rewards.builtin import model_id

Status = str  # "new", "unfinished" (a crashed run of the same config) or "finished"


def add_arguments(sub) -> None:
    """Add `compare` to the subparsers `sub` of the ple command."""
    p = sub.add_parser(
        "compare", help="train, evaluate and judge several methods and ablations on one "
        "task; write report.md and report.html",
        description="Run every method and ablation of a compare config with every seed "
        "(reusing finished runs of the same config in its output_dir), evaluate each and "
        "the base model on the same test queries, judge ours against the others in both "
        "orders, and write report.md and a self-contained report.html: the paper's "
        "Tables 1-5 and Figures 2-4. See configs/compare/imdb.yaml.")
    p.add_argument("--config", required=True, help="the compare YAML file")
    p.add_argument("--jobs", type=_positive, default=1, metavar="N",
                   help="train and evaluate up to N runs at once, each in its own process "
                   "with 1/N of torch's threads. On 2 CPU cores, two one-thread runs did "
                   "1.35 times the work of one two-thread run (BENCHMARKS.md: sampling "
                   "barely uses a second thread). Default 1")
    p.add_argument("--report-only", action="store_true",
                   help="train and evaluate nothing: write the report of the seeds where "
                   "ours and the base model are evaluated, with the runs evaluated for each "
                   "of them, naming the seeds and runs left out; for a study that spans "
                   "several sessions")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return int(text)


def _label(name: str, seed: int) -> str:
    return f"ple compare: {name} seed {seed}"


def run_status(spec: RunSpec) -> Status:
    """What the run's directory holds; refuses a run of another config, and leftovers of
    something that is not a run."""
    from ple.training import differing_settings, prepare_output_dir

    out = Path(spec.config.output_dir)
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        try:
            prepare_output_dir(str(out), overwrite=False)
        except UserError as e:
            raise UserError(f"{spec.where}: {spec.name} seed {spec.seed}: {e}") from None
        return "new"
    saved, wanted = load_config(str(saved_file)).to_dict(), spec.config.to_dict()
    # Where the run lives is not how it was trained.
    differ = differing_settings(saved, wanted, ignore=("output_dir",))
    if differ:
        shown = ", ".join(f"{k} {saved[k]!r} there, {wanted[k]!r} here" for k in differ[:3])
        raise UserError(f"{spec.where}: {spec.name} seed {spec.seed}: {out} holds a run of "
                        f"another config ({shown}); move it away or choose another output_dir")
    # A study committed for its results keeps summary.json and eval.json, not the weights
    # (docs/results/ in .gitignore), so that another machine can finish it: such a run is
    # finished too, as long as its evaluation is the one asked for (preflight refuses one
    # that is not).
    finished = (out / "summary.json").is_file() \
        and ((out / "adapter").is_dir() or (out / "eval.json").is_file())
    return "finished" if finished else "unfinished"


def preflight(cfg: CompareConfig, specs: list[RunSpec]) -> dict[tuple[str, int], Status]:
    """Every check that needs no model: each run's data and principle, the test split, and
    each run's directory. Returns each run's status."""
    from ple.training import checked_inputs
    from ple.evaluation.evaluate import load_test_split
    from ple.tasks import TASKS

    for spec in specs:
        if spec.seed == cfg.seeds[0]:  # the inputs do not depend on the seed
            try:
                checked_inputs(spec.config, TASKS[cfg.task])
            except UserError as e:
                raise UserError(f"{spec.where}: {spec.kind}s.{spec.name}: {e}") from None
    load_test_split(TASKS[cfg.task], cfg.eval.get("test_data"))
    statuses = {(s.name, s.seed): run_status(s) for s in specs}
    for s in specs:
        out = Path(s.config.output_dir)
        if statuses[s.name, s.seed] != "finished":
            continue
        trained_with = json.loads((out / "summary.json").read_text()).get("reward_model")
        if trained_with != model_id(s.config.reward):
            told = f"was trained with reward model {trained_with}" if trained_with else \
                "names no reward model (trained before ple recorded it)"
            here = model_id(s.config.reward) or "no trained model"
            raise UserError(f"{s.where}: {s.name} seed {s.seed}: {out} {told}, not the "
                            f"`{s.config.reward}` of this code ({here}; its data, settings or "
                            f"training code changed): a study does not mix rewards; move the "
                            f"run away to train it again")
        if not (out / "adapter").is_dir() and not measured(run_eval_config(cfg, s)):
            raise UserError(f"{s.where}: {s.name} seed {s.seed}: {out} holds the run's results "
                            f"but not its adapter, and its eval.json measured another "
                            f"evaluation; restore the adapter, or move the run away to train "
                            f"it again")
    return statuses


def train(spec: RunSpec, status: Status) -> None:
    from ple.training import run_training

    out = Path(spec.config.output_dir)
    if status == "finished":
        print(f"{_label(spec.name, spec.seed)}: reused the finished run in {out} "
              f"(same config)", flush=True)
        return
    for name in EVAL_FILES:  # an evaluation there measured an earlier adapter
        (out / name).unlink(missing_ok=True)
    saved = get_last_checkpoint(str(out)) if status == "unfinished" else None
    # ple's own trainers checkpoint; TRL trains its methods in one go, so they start again.
    if saved and not METHODS[spec.config.method].trl:
        print(f"{_label(spec.name, spec.seed)}: resuming the unfinished run in {out} from "
              f"{Path(saved).name}", flush=True)
        run_training(spec.config, resume=True)
        return
    again = " (replacing an unfinished run of the same config)" \
        if status == "unfinished" else ""
    print(f"{_label(spec.name, spec.seed)}: training in {out}{again}", flush=True)
    run_training(spec.config, overwrite=status == "unfinished")


def measured(cfg: EvalConfig) -> bool:
    """Whether the eval.json in cfg's output directory measured exactly this evaluation,
    with the reward model this code gives (a built-in reward retrained is another)."""
    saved = Path(cfg.output_dir) / "eval.json"
    if not saved.is_file():
        return False
    result = json.loads(saved.read_text())
    return result["config"] == dataclasses.asdict(cfg) \
        and result.get("reward_model") == model_id(cfg.reward)


def evaluate(cfg: EvalConfig, label: str) -> None:
    """`ple eval` of one run, unless its eval.json already measured exactly this."""
    from ple.evaluation.evaluate import evaluate as run_eval

    if measured(cfg):
        print(f"{label}: reused the evaluation {Path(cfg.output_dir) / 'eval.json'}",
              flush=True)
        return
    print(f"{label}: evaluating", flush=True)
    run_eval(cfg, overwrite=True)


def run_eval_config(cfg: CompareConfig, spec: RunSpec) -> EvalConfig:
    """The evaluation of one run's adapter, in the run's directory."""
    out = Path(spec.config.output_dir)
    return cfg.eval_config(spec.seed, out, out / "adapter", spec.config.chat_template)


def train_and_evaluate(cfg: CompareConfig, spec: RunSpec, status: Status) -> None:
    train(spec, status)
    evaluate(run_eval_config(cfg, spec), _label(spec.name, spec.seed))


def _start_worker(threads: int) -> None:
    """A worker of `ple compare --jobs` speaks as the command does, with its share of
    torch's threads."""
    import torch

    from ple.cli import log_to_stderr, quiet_third_parties

    quiet_third_parties()
    log_to_stderr()
    torch.set_num_threads(threads)


def run_in_processes(cfg: CompareConfig, runs: list[tuple[RunSpec, Status]],
                     jobs: int) -> None:
    """Each run in a worker process, `jobs` at a time, in the given order. The first run
    that fails stops the rest from starting and is raised here; the runs under way finish
    (each checkpoints, so a stopped study continues from there)."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    # spawn, not fork: a forked copy of a process that has used torch's threads can hang.
    # A fresh process per run: nothing one run leaves in memory reaches the next.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(threads,),
                             max_tasks_per_child=1) as pool:
        futures = [pool.submit(train_and_evaluate, cfg, spec, status)
                   for spec, status in runs]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception()]
        if failed:
            pool.shutdown(cancel_futures=True)
            raise failed[0].exception()


def judge_all(cfg: CompareConfig) -> None:
    """Ours against every other method and the base model, per seed, each pair judged in
    both orders (ple winrate). A report is reused when its judge and its responses are the
    ones it would judge now."""
    from ple.evaluation.pairwise import match
    from ple.evaluation.winrate import SAMPLES_FILE, make_judge, winrate_report

    spec = dataclasses.asdict(cfg.winrate)
    judge = None
    for seed in cfg.seeds:
        ours = str(cfg.run_dir(cfg.ours, seed) / SAMPLES_FILE)
        for other in cfg.opponents():
            if seed not in cfg.seeds_of(other):
                continue
            theirs = str(cfg.run_dir(other, seed) / SAMPLES_FILE)
            path = cfg.winrate_file(other, seed)
            matched = match(ours, theirs)
            now = [[p.query, p.response_a, p.response_b] for p in matched.pairs]
            if path.is_file():
                saved = json.loads(path.read_text())
                if saved.get("judge_spec") == spec and \
                        [[r["query"], r["response_a"], r["response_b"]]
                         for r in saved["pairs"]] == now:
                    print(f"{_label(other, seed)}: reused the win rates {path}", flush=True)
                    continue
            print(f"{_label(other, seed)}: judging {cfg.ours} against {other}", flush=True)
            judge = judge or make_judge(argparse.Namespace(**spec))
            report = winrate_report(judge, matched, ours, theirs)
            report["model_a"]["label"], report["model_b"]["label"] = cfg.ours, other
            report["judge_spec"] = spec
            write_whole(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def compare(cfg: CompareConfig, report_only: bool = False, jobs: int = 1) -> None:
    from ple.compare import frontier, render, report

    specs = run_specs(cfg)
    missing: list[str] = []
    if report_only:
        # Before finished_part: the frontier shows every run of the whole config that is
        # evaluated so far, at every seed, whether or not ours is among them yet.
        if cfg.frontier:
            frontier.write(cfg)
        cfg, missing = finished_part(cfg)
        specs = [s for s in specs
                 if s.name in (*cfg.methods, *cfg.ablations) and s.seed in cfg.seeds]
    else:
        statuses = preflight(cfg, specs)
        for seed in cfg.seeds:
            evaluate(cfg.eval_config(seed, cfg.run_dir(BASE, seed), None,
                                     cfg.common.get("chat_template")), _label(BASE, seed))
        runs = [(spec, statuses[spec.name, seed]) for seed in cfg.seeds
                for spec in specs if spec.seed == seed]
        if jobs == 1:
            for spec, status in runs:
                train_and_evaluate(cfg, spec, status)
        else:
            run_in_processes(cfg, runs, jobs)
        if cfg.winrate:
            judge_all(cfg)
        if cfg.frontier:
            frontier.write(cfg)
    title, sections = report.build(cfg, specs)
    if missing:
        sections.insert(0, render.Section("A partial report", [
            f"ple compare --report-only: not finished yet, so in no table: "
            f"{', '.join(missing)}."]))
    out = Path(cfg.output_dir)
    for name, png in render.figures(sections).items():
        write_whole(out / "figures" / name, png)
    write_whole(out / "report.md", render.to_markdown(title, sections))
    write_whole(out / "report.html", render.to_html(title, sections))
    print(f"ple compare: wrote {out / 'report.md'} and {out / 'report.html'}"
          + (f" (not finished yet: {', '.join(missing)})" if missing else ""))


def run(args) -> None:
    compare(load_compare_config(args.config), args.report_only, args.jobs)
