"""frontier.md and frontier.html of `ple compare`: the reward-KL frontier (issue 34, the DPO
paper's Figure 2), written when the compare config has a `frontier:` section (FrontierSpec).

- one figure per scorer (the training reward, then every extra reward of the evaluation,
  e.g. VADER): mean reward of the test responses against KL(pi || pi_base) on them, one
  colour per curve, each point the mean over its seeds with 95 % intervals on both axes,
  each curve drawn through its points in KL order, BASE at KL 0, a one-run curve (SFT) as
  a single point;
- per scorer, each curve's reward at matched KL: read off each seed's own curve, linear in
  log KL between the two neighbouring points and never extrapolated, then the mean over
  seeds with Student's t's 95 % interval;
- every point with its guards;
- with `choose_at_kl` (a search on validation, each variant a two-point curve): each
  variant's reward at that KL on the line through its two points, and the best variant.

It reads whatever evaluations exist under output_dir, so a study that spans sessions is
reported as far as it has got (`ple compare --report-only`): a run not evaluated yet is
shown as missing, and every number says over how many seeds it is.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import NamedTuple

from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FuncFormatter

from ple.compare.config import BASE, CompareConfig
from ple.compare.figures import png_bytes, run_style
from ple.compare.guards import GUARDS_RULE, guards_hold
from ple.compare.render import MISSING, Figure, Section, Table, to_html, to_markdown
from ple.compare.study import write_whole
from ple.evaluation.metrics import assistant_speak_share, ci95, mean_and_se
from ple.evaluation.winrate import SAMPLES_FILE

# The matched-KL levels when the config gives none: the quartiles of the pooled KLs of
# every curve's points, so that the three levels lie where most curves have points.
DEFAULT_QUANTILES = (0.25, 0.5, 0.75)


# --- statistics ------------------------------------------------------------------------
class Pt(NamedTuple):
    """One point of one seed's curve: KL from the base (nats), reward and its standard
    error over the test responses."""
    kl: float
    reward: float
    se: float


def log_kl_line(p: Pt, q: Pt, kl: float) -> tuple[float, float] | None:
    """The reward at `kl` on the straight line through `p` and `q` in (log KL, reward),
    extrapolated where `kl` lies outside them, with its standard error: the reading is
    (1 - t) p.reward + t q.reward, so its SE is that of a weighted sum of two independent
    means, sqrt(((1 - t) p.se)^2 + (t q.se)^2) (the KLs' own noise left out). None where
    either KL is not positive (no logarithm) or the two KLs are equal (no line)."""
    if p.kl <= 0 or q.kl <= 0 or kl <= 0 or p.kl == q.kl:
        return None
    t = (math.log(kl) - math.log(p.kl)) / (math.log(q.kl) - math.log(p.kl))
    return (1 - t) * p.reward + t * q.reward, math.hypot((1 - t) * p.se, t * q.se)


def interpolate_log_kl(points: list[Pt], kl: float) -> tuple[float, float] | None:
    """The reward at `kl` on one curve: its points in KL order joined by straight lines in
    log KL, read between the two neighbours of `kl` (log_kl_line), with its SE. None
    outside [smallest, largest] KL of the points: no extrapolation. A point with KL <= 0
    (a policy that barely moved, measured with noise) has no logarithm and is left out."""
    placed = sorted(p for p in points if p.kl > 0)
    for p in placed:  # on a point, that point (also the only way to read a one-point curve)
        if p.kl == kl:
            return p.reward, p.se
    for lo, hi in zip(placed, placed[1:]):
        if lo.kl < kl < hi.kl:
            return log_kl_line(lo, hi, kl)
    return None


def kl_range(points: list[Pt]) -> tuple[float, float] | None:
    """The KLs a curve can be read at without extrapolation (positive KLs only)."""
    kls = [p.kl for p in points if p.kl > 0]
    return (min(kls), max(kls)) if kls else None


def default_kl_levels(kls: list[float], quantiles=DEFAULT_QUANTILES) -> list[float]:
    """Matched-KL levels from the pooled KLs of every curve's points: their `quantiles`,
    taken in log KL (the scale the curves are read on), rounded to two significant
    figures so that a column reads as a number a reader can quote. Non-positive KLs are
    left out; none left, no levels."""
    logs = sorted(math.log(k) for k in kls if k > 0)
    if not logs:
        return []
    levels = []
    for q in quantiles:
        position = q * (len(logs) - 1)
        low = math.floor(position)
        high = min(low + 1, len(logs) - 1)
        level = math.exp(logs[low] + (position - low) * (logs[high] - logs[low]))
        levels.append(float(f"{level:.2g}"))
    return sorted(set(levels))


def over_seeds(estimates: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean and standard error from per-seed (mean, SE) pairs: one seed, its own SE (over
    its test responses); several, the SE of the mean over the seeds' means."""
    if len(estimates) == 1:
        return estimates[0]
    return mean_and_se([m for m, _ in estimates])


def choose_variant(variants: dict[str, tuple[Pt, bool, Pt, bool] | None],
                   kl: float) -> str | None:
    """The search rule: each variant's reward at `kl` read off the line through its two
    points in log KL (log_kl_line, extrapolating), and the variant with the highest such
    reward among those whose two points are both there and both hold the guards (the
    bools). None where no variant qualifies. A variant is (point, its guards held, point,
    its guards held), or None while a run of it is missing."""
    readings = {}
    for name, variant in variants.items():
        if variant is None:
            continue
        p, p_held, q, q_held = variant
        reading = log_kl_line(p, q, kl)
        if p_held and q_held and reading is not None:
            readings[name] = reading[0]
    return max(readings, key=readings.get, default=None)


def _number(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _with_interval(mean: float, half: float) -> str:
    if math.isnan(half):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def _pm(mean: float, se: float) -> str:
    return f"{mean:.3f}" if math.isnan(se) else f"{mean:.3f} ± {se:.3f}"


def matched_cell(seed_curves: list[tuple[list[Pt], bool]], kl: float, seeds: int) -> str:
    """One curve's reward at `kl` over seeds: each seed's curve is (its points, whether all
    its runs are evaluated). Only complete seeds are read (interpolate_log_kl): a curve
    missing a point would be read across the gap, a number that moves when the run lands.
    The cell is the mean over the seeds read with ci95's interval (Student's t over the
    seeds, or one seed's 1.96 SE), saying over how many of `seeds` it is when fewer; outside
    the KL range of a seed's curve it says so rather than average the seeds that happen to
    reach `kl`; with no complete seed yet, it says runs are missing."""
    readings, outside = [], []
    for points, complete in seed_curves:
        if not complete:
            continue
        reading = interpolate_log_kl(points, kl)
        if reading is not None:
            readings.append(reading)
        elif kl_range(points):
            outside.append(kl_range(points))
    if outside:
        low, high = min(r[0] for r in outside), max(r[1] for r in outside)
        span = f"KL {_number(low)} only" if low == high else f"KL {_number(low)}–{_number(high)}"
        return f"outside its range ({span})"
    if not readings:
        return f"{MISSING} (runs missing)"
    mean, half = ci95(readings)
    note = "" if len(readings) == seeds else f" ({len(readings)} of {seeds} seeds)"
    return _with_interval(mean, half) + note


# --- what is on disk -------------------------------------------------------------------
def read_evals(cfg: CompareConfig, names: list[str]) -> dict[tuple[str, int], dict]:
    """(run, seed) -> its eval.json, for every run of `names` (and BASE) at every seed it
    has that is evaluated so far. An eval.json older than `assistant_speak` gets it from
    its responses, as results.Runs does, so that the guards can be judged."""
    evals = {}
    for name in [BASE, *names]:
        for seed in cfg.seeds_of(name):
            d = cfg.run_dir(name, seed)
            if not (d / "eval.json").is_file():
                continue
            e = json.loads((d / "eval.json").read_text())
            if "assistant_speak" not in e and (d / SAMPLES_FILE).is_file():
                rows = [json.loads(line) for line in (d / SAMPLES_FILE).read_text(
                    encoding="utf-8").splitlines() if line.strip()]
                e["assistant_speak"] = assistant_speak_share([r["response"] for r in rows])
            evals[name, seed] = e
    return evals


def score(e: dict, scorer: int, name: str) -> tuple[float, float] | None:
    """(mean, SE) of the training reward (scorer 0) or of extra reward `name` in an
    eval.json; None where it has no such score."""
    if scorer == 0:
        return e["reward_mean"], e["reward_se"]
    extra = e.get("extra_rewards", {}).get(name)
    return None if extra is None else (extra["mean"], extra["se"])


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


class Frontier:
    """The curves of a config and what their runs' evaluations hold."""

    def __init__(self, cfg: CompareConfig):
        self.cfg, self.spec = cfg, cfg.frontier
        self.runs = [r for runs in self.spec.curves.values() for r in runs]
        self.evals = read_evals(cfg, self.runs)
        base = [e for (n, _), e in self.evals.items() if n == BASE]
        first = base[0] if base else next(iter(self.evals.values()), None)
        self.scorers = [] if first is None else \
            [first["reward"], *first.get("extra_rewards", {})]

    def placed(self, name: str) -> list[int]:
        """The seeds of run `name` evaluated with a KL (placeable in the plane)."""
        return [s for s in self.cfg.seeds_of(name)
                if (name, s) in self.evals and self.evals[name, s].get("kl_mean") is not None]

    def held(self, name: str, seed: int) -> bool | None:
        """Whether the guards of a run's seed hold against that seed's BASE; None while
        BASE's evaluation of the seed is missing."""
        base = self.evals.get((BASE, seed))
        return None if base is None else guards_hold(self.evals[name, seed], base)

    def seed_point(self, name: str, seed: int, scorer: int) -> Pt | None:
        e = self.evals.get((name, seed))
        if e is None or e.get("kl_mean") is None:
            return None
        s = score(e, scorer, self.scorers[scorer])
        return None if s is None else Pt(e["kl_mean"], s[0], _nan(s[1]))

    def seed_curves(self, curve: str, scorer: int) -> list[tuple[list[Pt], bool]]:
        """Per seed of the config, the curve's points on that seed and whether every run
        of the curve that has the seed is there."""
        out = []
        for seed in self.cfg.seeds:
            members = [n for n in self.spec.curves[curve] if seed in self.cfg.seeds_of(n)]
            points = [self.seed_point(n, seed, scorer) for n in members]
            if members:
                out.append(([p for p in points if p is not None],
                            all(p is not None for p in points)))
        return out

    def mean_point(self, name: str, scorer: int):
        """(KL mean, KL half-width, reward mean, reward half-width, guards held on every
        seed) over the placed seeds, 95 % intervals by ci95; None where none is placed."""
        points = [self.seed_point(name, s, scorer) for s in self.placed(name)]
        points = [p for p in points if p is not None]
        if not points:
            return None
        seeds = self.placed(name)
        kl, kl_half = ci95([(self.evals[name, s]["kl_mean"],
                             _nan(self.evals[name, s].get("kl_se"))) for s in seeds])
        reward, reward_half = ci95([(p.reward, p.se) for p in points])
        held = [self.held(name, s) for s in seeds]
        return kl, kl_half, reward, reward_half, all(h is True for h in held)

    def missing(self) -> list[str]:
        """Each run not yet placed on every one of its seeds, with the seeds it lacks."""
        out = []
        for name in self.runs:
            lacking = [s for s in self.cfg.seeds_of(name) if s not in self.placed(name)]
            if lacking == self.cfg.seeds_of(name):
                out.append(name)
            elif lacking:
                out.append(f"{name} (seed{'s' if len(lacking) > 1 else ''} "
                           f"{', '.join(map(str, lacking))})")
        return out

    def levels(self) -> list[float]:
        if self.spec.kl_levels:
            return list(self.spec.kl_levels)
        # One KL per point (its mean over seeds), so that a point counts once however
        # many of its seeds have finished.
        return default_kl_levels([statistics.mean(self.evals[n, s]["kl_mean"]
                                                  for s in self.placed(n))
                                  for n in self.runs if self.placed(n)])


# --- the document ----------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "scorer"


def figure(fr: Frontier, scorer: int) -> Figure:
    """Reward (scorer) against KL, one colour per curve, BASE at KL 0."""
    name = fr.scorers[scorer]
    fig = MplFigure(figsize=(9, 5.2))
    ax = fig.subplots()
    positive = []
    for i, (curve, members) in enumerate(fr.spec.curves.items()):
        style = run_style(i)
        points = sorted(p for p in (fr.mean_point(n, scorer) for n in members) if p)
        positive += [p[0] for p in points if p[0] > 0]
        if not points:
            continue
        xs, xh, ys, yh, held = zip(*points)
        # NaN half-widths (one seed without an SE) draw no bar rather than fail.
        ax.errorbar(xs, ys, xerr=[0 if math.isnan(h) else h for h in xh],
                    yerr=[0 if math.isnan(h) else h for h in yh], fmt="none",
                    ecolor=style["color"], elinewidth=1, capsize=2, alpha=0.7)
        if len(points) > 1:
            ax.plot(xs, ys, label=curve, **style)
        # Filled: the guards hold on every seed; hollow: they fail on one at least.
        ax.scatter(xs, ys, s=36, zorder=3, edgecolors=style["color"],
                   facecolors=[style["color"] if h else "white" for h in held],
                   label=curve if len(points) == 1 else None)
    base = [score(fr.evals[BASE, s], scorer, name) for s in fr.cfg.seeds
            if (BASE, s) in fr.evals]
    base = [b for b in base if b is not None]
    if base:
        mean, half = ci95([(m, _nan(se)) for m, se in base])
        ax.errorbar([0], [mean], yerr=[0 if math.isnan(half) else half], fmt="*",
                    color="black", markersize=12, capsize=2, label="BASE", zorder=4)
    if positive:
        # Linear up to the smallest point's decade, so that BASE sits at 0, logarithmic
        # above: a segment drawn straight there is the log-KL interpolation of the table.
        ax.set_xscale("symlog", linthresh=10 ** math.floor(math.log10(min(positive))),
                      linscale=0.5)
        # KLs as numbers a reader quotes (0.3, 1, 10), not powers of ten.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("KL(π ‖ π_base) on its test responses (nats)")
    ax.set_ylabel(f"mean reward: {name}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    seeds = len(fr.cfg.seeds)
    caption = (f"{'Classifier (training reward)' if scorer == 0 else 'Extra scorer'} "
               f"{name}: mean reward of the test responses against their KL from the base "
               f"model, one colour per curve, each point "
               + ("one seed's, with 95 % intervals over its test responses"
                  if seeds == 1 else "the mean over its seeds with 95 % intervals (Student's "
                  "t over the seeds)")
               + " on both axes; each curve drawn through its points in KL order (straight "
               "in log KL above the linear stretch at 0); hollow: the guards fail on a "
               "seed at least; star: BASE, at KL 0.")
    return Figure(f"frontier-{'reward' if scorer == 0 else _slug(name)}.png", caption,
                  png_bytes(fig))


def matched_table(fr: Frontier, scorer: int, levels: list[float]) -> Table:
    rows = []
    for curve in fr.spec.curves:
        seed_curves = fr.seed_curves(curve, scorer)
        rows.append([curve, *(matched_cell(seed_curves, level, len(seed_curves))
                              for level in levels)])
    return Table(f"reward at matched KL: {fr.scorers[scorer]}", ["curve", *(
        f"KL {_number(level)}" for level in levels)], rows)


def _ratio(fr: Frontier, name: str, key: str, how) -> str:
    """A guard's measure against the same seed's BASE, mean over the seeds having both."""
    values = [how(fr.evals[name, s][key], fr.evals[BASE, s][key]) for s in fr.placed(name)
              if (BASE, s) in fr.evals]
    return MISSING if not values else statistics.mean(values)


def points_table(fr: Frontier) -> Table:
    header = ["run", "curve", "seeds", "KL", *(f"{n} ↑" for n in fr.scorers), "base-PPL / BASE's",
              "distinct-2 vs BASE", "assistant-speak vs BASE", "guards held"]
    rows = []
    for curve, members in fr.spec.curves.items():
        for name in members:
            seeds = fr.placed(name)
            count = f"{len(seeds)}/{len(fr.cfg.seeds_of(name))}"
            if not seeds:
                rows.append([name, curve, count, *[MISSING] * (len(header) - 3)])
                continue
            evals = [fr.evals[name, s] for s in seeds]
            kl = _with_interval(*ci95([(e["kl_mean"], _nan(e.get("kl_se"))) for e in evals]))
            scores = []
            for i, scorer in enumerate(fr.scorers):
                got = [score(e, i, scorer) for e in evals]
                scores.append(MISSING if None in got else
                              _with_interval(*ci95([(m, _nan(se)) for m, se in got])))
            ppl = _ratio(fr, name, "base_perplexity", lambda r, b: r / b)
            d2 = _ratio(fr, name, "distinct_2", lambda r, b: 100 * (r / b - 1))
            speak = _ratio(fr, name, "assistant_speak", lambda r, b: 100 * (r - b))
            held = [fr.held(name, s) for s in seeds]
            rows.append([name, curve, count, kl, *scores,
                         ppl if ppl == MISSING else f"{ppl:.2f}×",
                         d2 if d2 == MISSING else f"{d2:+.1f} %",
                         speak if speak == MISSING else f"{speak:+.1f} pp",
                         f"{sum(h is True for h in held)}/{len(held)}"])
    return Table("every point of every curve", header, rows)


def variant_point(fr: Frontier, name: str) -> tuple[Pt, bool, float] | None:
    """A search variant's run as one point: KL and reward (mean, SE) over its seeds
    (over_seeds), whether its guards hold on every one of its seeds, and the KL's SE;
    None while a seed of it is missing."""
    if len(fr.placed(name)) < len(fr.cfg.seeds_of(name)):
        return None
    evals = [fr.evals[name, s] for s in fr.placed(name)]
    kl, kl_se = over_seeds([(e["kl_mean"], _nan(e.get("kl_se"))) for e in evals])
    reward, reward_se = over_seeds([(e["reward_mean"], _nan(e["reward_se"])) for e in evals])
    held = [fr.held(name, s) for s in fr.placed(name)]
    return Pt(kl, reward, reward_se), all(h is True for h in held), kl_se


def search_section(fr: Frontier) -> Section:
    """The search's table: each variant's two points and its reading at choose_at_kl."""
    at = fr.spec.choose_at_kl
    variants, rows = {}, []
    for curve, (first, second) in fr.spec.curves.items():
        p, q = variant_point(fr, first), variant_point(fr, second)
        variants[curve] = None if p is None or q is None else (p[0], p[1], q[0], q[1])
        cells = []
        for run, point in ((first, p), (second, q)):
            cells += [run, MISSING, MISSING, MISSING] if point is None else \
                [run, _pm(point[0].kl, point[2]),
                 _pm(point[0].reward, point[0].se), "held" if point[1] else "failed"]
        reading = None if variants[curve] is None else log_kl_line(p[0], q[0], at)
        rows.append([curve, *cells, MISSING if reading is None else _pm(*reading)])
    best = choose_variant(variants, at)
    for row in rows:
        row.append("best" if row[0] == best else "")
    waiting = [c for c, v in variants.items() if v is None]
    seeds = fr.cfg.seeds
    blocks = [
        f"The search's rule (frontier.choose_at_kl): per variant, the reward "
        f"({fr.scorers[0]}) at KL {_number(at)} nats read off the straight line through its two points in "
        f"(log KL, reward), extrapolated where both lie on one side; the best is the "
        f"highest such reward among the variants whose two points both hold the guards"
        + (" on every seed" if len(seeds) > 1 else "") + ". "
        + ("One seed: each point is the run's own, ± its standard error over the test "
           "responses" if len(seeds) == 1 else
           f"{len(seeds)} seeds: each point is the mean over the seeds ± its standard "
           f"error over them")
        + "; the reading's ± is the standard error of the two rewards' weighted sum (the "
        "KLs' noise left out).",
        Table(f"the search: reward at KL {_number(at)}",
              ["variant", "point 1", "KL", "reward", "guards", "point 2", "KL", "reward",
               "guards", f"reward at KL {_number(at)}", "choice"], rows)]
    if best is None:
        blocks.append("No variant has both points evaluated and holding the guards yet: "
                      "no choice." if waiting else
                      "No variant holds the guards at both points: no choice.")
    else:
        blocks.append(f"Best so far: {best}" + (
            f" (not evaluated yet, so not in the running: {', '.join(waiting)})."
            if waiting else "."))
    return Section("The search", blocks)


def build(cfg: CompareConfig) -> tuple[str, list[Section]]:
    fr = Frontier(cfg)
    title = f"ple compare: the reward–KL frontier, {cfg.task}, model {cfg.model}"
    seeds = cfg.seeds
    missing = fr.missing()
    intro = [
        f"Each curve is a method (or a variant) swept over its strength: each run a point, "
        f"the mean reward of its test responses against their KL from the base model, "
        f"per response the sum over its tokens of log π − log π_base, mean over responses "
        f"(nats). Seeds {', '.join(map(str, seeds))}; "
        + ("one seed: intervals are 95 % over its test responses (± 1.96 standard errors)."
           if len(seeds) == 1 else "every point is the mean over its seeds with the 95 % "
           "interval of Student's t over the seeds' values (training and test-set noise "
           "alike)."),
        "Not evaluated yet (no eval.json with its KL), so missing from the figures and "
        "tables: " + ", ".join(missing)
        + "." if missing else "Every run of every curve is evaluated."]
    if not fr.scorers:
        return title, [Section("Reward–KL frontier", intro + ["Nothing evaluated yet."])]
    levels = fr.levels()
    sections = [Section("Reward–KL frontier", intro + [figure(fr, i)
                                                        for i in range(len(fr.scorers))])]
    how = ("given in the config (frontier.kl_levels)" if fr.spec.kl_levels else
           "the quartiles of the pooled KLs of every point (in log KL, to two significant "
           "figures), so they move as runs finish")
    matched = [
        f"Each curve's reward at {len(levels)} matched KL{'s' if len(levels) != 1 else ''}, "
        f"{how}. Per seed, the reward is read off "
        f"that seed's own curve: linear in log KL between the two neighbouring points in KL "
        f"order, never extrapolated: a level outside a curve's KL range says so. Then the "
        + ("one seed's reading with its 95 % interval (± 1.96 standard errors of the two "
           "neighbours' weighted rewards)." if len(seeds) == 1 else
           "mean over seeds with the 95 % interval of Student's t over the seeds' readings. "
           "A seed is read once every run of the curve is evaluated at it (a curve missing "
           "a point would be read across the gap); a cell over fewer seeds says how many.")]
    if not levels:
        matched.append("No point with a positive KL yet: no levels to read at.")
    else:
        matched += [matched_table(fr, i, levels) for i in range(len(fr.scorers))]
    sections.append(Section("Reward at matched KL", matched))
    sections.append(Section("The points", [
        "Every run of every curve: its seeds evaluated so far, KL and each scorer (mean "
        f"with its 95 % interval), and on how many seeds its guards hold (report.md's: "
        f"{GUARDS_RULE}; the measures shown are means over the seeds; pp: percentage "
        f"points).", points_table(fr)]))
    if fr.spec.choose_at_kl is not None:
        sections.append(search_section(fr))
    return title, sections


def write(cfg: CompareConfig) -> None:
    """frontier.md and a self-contained frontier.html under output_dir, figures under its
    figures/, from whatever runs are evaluated so far."""
    title, sections = build(cfg)
    out = Path(cfg.output_dir)
    for section in sections:
        for block in section.blocks:
            if isinstance(block, Figure):
                write_whole(out / "figures" / block.name, block.png)
    write_whole(out / "frontier.md", to_markdown(title, sections))
    write_whole(out / "frontier.html", to_html(title, sections))
    print(f"ple compare: wrote {out / 'frontier.md'} and {out / 'frontier.html'}")
