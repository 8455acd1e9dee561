"""A study's output directory as ple compare's parts share it: which part of a study is
finished, and writing a file there whole. Here rather than in orchestrate, which runs the
study and imports the reports, so that the reports (report, frontier) can use them too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ple.compare.config import BASE, CompareConfig
from ple.errors import UserError


def write_whole(path: Path, data: str | bytes) -> None:
    """Write whole or not at all: a crash leaves no half-written file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data, "utf-8")
    tmp.replace(path)


def finished_part(cfg: CompareConfig) -> tuple[CompareConfig, list]:
    """The config and runs restricted to the seeds where ours and the base model are
    evaluated, and to the runs evaluated for each of those seeds, without win rates unless
    all of them were judged; and what is left out (runs, seeds, win rates)."""
    def evaluated(name: str, seeds: list[int]) -> bool:
        return all((cfg.run_dir(name, seed) / "eval.json").is_file() for seed in seeds)

    seeds = [s for s in cfg.seeds if evaluated(BASE, [s]) and evaluated(cfg.ours, [s])]
    if not seeds:
        raise UserError(f"--report-only: `{cfg.ours}` (ours) and the base model are not both "
                        f"evaluated for any seed yet in {cfg.output_dir}; nothing to report")
    # A method's seeds within those; the report's first seed must be among them (its samples).
    own = {n: [s for s in cfg.seeds_of(n) if s in seeds] for n in (*cfg.methods, *cfg.ablations)}
    missing = [f"seed {s}" for s in cfg.seeds if s not in seeds]
    missing += [n for n in own if seeds[0] not in own[n] or not evaluated(n, own[n])]
    part = dataclasses.replace(
        cfg, seeds=seeds,
        methods={n: v for n, v in cfg.methods.items() if n not in missing},
        ablations={n: v for n, v in cfg.ablations.items() if n not in missing},
        method_seeds={n: own[n] for n in cfg.method_seeds if n not in missing})
    if part.winrate and not all(part.winrate_file(o, seed).is_file()
                                for o in part.opponents() for seed in part.seeds_of(o)):
        part = dataclasses.replace(part, winrate=None)
        missing.append("the win rates")
    return part, missing
