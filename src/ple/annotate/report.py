"""Win/tie/lose (the paper's Figure 2b), inter-annotator agreement, chart and JSON.

The paper's rule, from model A's side, for one annotator and one pair judged in both
orders: *win* if A was preferred in both orders, *lose* if B was preferred in both, *tie*
otherwise (preferred in only one order, or "equal" in either).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from ple.annotate.store import Judgment, Store
from ple.errors import UserError
from ple.evaluation.pairwise import OUTCOMES, outcome

KAPPA = "Fleiss' kappa"
RULE = ("per annotator and pair judged in both orders: win if model A was preferred in "
        "both orders, lose if model B was, tie otherwise (one order each, or 'equal' in "
        "either)")


def fleiss_kappa(counts: list[list[int]]) -> float | None:
    """Fleiss' kappa (1971) of a table with one row per item and one column per category,
    each cell the number of raters who put that item in that category.

    Rows may have different totals (each at least 2): each item's agreement uses its own
    number of raters, which is Fleiss' formula when all are equal. None when it is
    undefined (no item, or every rating in one category, so chance agreement is 1).
    """
    rows = [r for r in counts if sum(r) >= 2]
    if not rows:
        return None
    total = sum(sum(r) for r in rows)
    p_j = [sum(r[j] for r in rows) / total for j in range(len(rows[0]))]
    p_bar = sum((sum(c * c for c in r) - sum(r)) / (sum(r) * (sum(r) - 1))
                for r in rows) / len(rows)
    p_e = sum(p * p for p in p_j)
    if p_e >= 1:
        return None
    return (p_bar - p_e) / (1 - p_e)


def outcomes(judgments: list[Judgment]) -> tuple[dict[str, dict[int, str]], Counter]:
    """{annotator: {pair: outcome}} for pairs judged in both orders, and per annotator the
    number of pairs judged in one order only."""
    prefs: dict[str, dict[int, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
    for j in judgments:
        prefs[j.annotator][j.pair][j.order] = j.preferred
    result: dict[str, dict[int, str]] = {}
    incomplete: Counter = Counter()
    for annotator, by_pair in prefs.items():
        result[annotator] = {}
        for pair, by_order in by_pair.items():
            if len(by_order) == 2:
                result[annotator][pair] = outcome(by_order[0], by_order[1])
            else:
                incomplete[annotator] += 1
    return result, incomplete


def _tally(values) -> dict:
    c = Counter(values)
    n = sum(c.values())
    out = {k: c[k] for k in OUTCOMES}
    out["n"] = n
    out.update({f"{k}_rate": (c[k] / n if n else None) for k in OUTCOMES})
    return out


def summarize(judgments: list[Judgment], n_pairs: int) -> dict:
    """The report's figures: per annotator, pooled (every annotator's outcomes together),
    and Fleiss' kappa over the win/tie/lose outcomes of pairs that two or more annotators
    finished."""
    by_annotator, incomplete = outcomes(judgments)
    annotators = {}
    for name in sorted(by_annotator):
        annotators[name] = {**_tally(by_annotator[name].values()),
                            "incomplete": incomplete[name]}
    pooled = _tally(o for per in by_annotator.values() for o in per.values())
    pooled["incomplete"] = sum(incomplete.values())
    per_pair: dict[int, Counter] = defaultdict(Counter)
    for per in by_annotator.values():
        for pair, o in per.items():
            per_pair[pair][o] += 1
    table = [[c[k] for k in OUTCOMES] for c in per_pair.values() if sum(c.values()) >= 2]
    raters = sorted({sum(r) for r in table})
    agreement = {"measure": KAPPA, "categories": list(OUTCOMES), "value": fleiss_kappa(table),
                 "n_pairs": len(table), "raters_per_pair": raters,
                 "n_annotators": sum(1 for per in by_annotator.values() if per)}
    if len(table) == 0:
        agreement["note"] = "needs a pair finished by at least two annotators"
    elif agreement["value"] is None:
        agreement["note"] = "undefined: every outcome is in one category"
    return {"n_pairs": n_pairs, "rule": RULE, "annotators": annotators, "pooled": pooled,
            "agreement": agreement}


def plot(summary: dict, label_a: str, label_b: str, path: Path) -> None:
    """A stacked horizontal bar per annotator and one pooled, like the paper's Figure 2b."""
    from matplotlib.figure import Figure

    rows = [(name, s) for name, s in summary["annotators"].items() if s["n"]]
    rows.append(("pooled", summary["pooled"]))
    rows.reverse()  # matplotlib draws the first bar at the bottom
    colours = {"win": "#4c9a5b", "tie": "#b8b8b8", "lose": "#c8524a"}
    fig = Figure(figsize=(7.5, 1.2 + 0.45 * len(rows)))
    ax = fig.subplots()
    left = [0.0] * len(rows)
    for k in OUTCOMES:
        widths = [100 * s[f"{k}_rate"] for _, s in rows]
        bars = ax.barh([name for name, _ in rows], widths, left=left, color=colours[k],
                       label=f"{label_a} {k}s" if k != "tie" else "tie", height=0.6)
        for bar, w in zip(bars, widths):
            if w >= 6:
                ax.text(bar.get_x() + w / 2, bar.get_y() + bar.get_height() / 2,
                        f"{w:.0f}%", ha="center", va="center", fontsize=9)
        left = [a + w for a, w in zip(left, widths)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of pairs judged in both orders")
    n_annotators = sum(1 for s in summary["annotators"].values() if s["n"])
    ax.set_title(f"{label_a} vs {label_b}: human evaluation ({summary['pooled']['n']} "
                 f"judged pairs, {n_annotators} annotator{'s' * (n_annotators != 1)})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45 if len(rows) < 4 else -0.25),
              ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def build_report(db: str, output_dir: str | None = None, label_a: str | None = None,
                 label_b: str | None = None) -> tuple[dict, Path, Path]:
    """Compute the report of `db` and write it as JSON and PNG. Returns (report, json
    path, png path)."""
    store = Store(db)
    summary = summarize(store.judgments(), store.n_pairs)
    if not summary["pooled"]["n"]:
        raise UserError(f"--db {db}: no pair has been judged in both orders yet, so there "
                        f"is nothing to report ({len(store.judgments())} judgments)")
    label_a = label_a or store.meta["label_a"]
    label_b = label_b or store.meta["label_b"]
    out = Path(output_dir) if output_dir else Path(db).resolve().parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--output-dir {out}: cannot create ({e.strerror})") from None
    json_path, png_path = out / "annotate_report.json", out / "annotate_report.png"
    report = {"kind": "ple-annotate-report", "version": 1,
              "model_a": {"label": label_a, "file": store.meta["file_a"]},
              "model_b": {"label": label_b, "file": store.meta["file_b"]},
              **summary, "chart": png_path.name}
    plot(summary, label_a, label_b, png_path)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report, json_path, png_path


def describe(report: dict) -> str:
    a, b = report["model_a"]["label"], report["model_b"]["label"]
    lines = [f"{a} (A) vs {b} (B), {report['n_pairs']} pairs; outcomes of A "
             f"(win = A preferred in both orders):",
             f"  {'annotator':<20} {'n':>4} {'win':>11} {'tie':>11} {'lose':>11}"]

    def row(name, s):
        cells = " ".join(f"{s[k]:>4} ({100 * s[k + '_rate']:3.0f}%)" for k in OUTCOMES)
        extra = f"  (+{s['incomplete']} in one order only)" if s["incomplete"] else ""
        return f"  {name:<20} {s['n']:>4} {cells}{extra}"

    for name, s in report["annotators"].items():
        if s["n"]:
            lines.append(row(name, s))
        else:
            lines.append(f"  {name:<20}    0  (+{s['incomplete']} in one order only)")
    lines.append(row("pooled", report["pooled"]))
    ag = report["agreement"]
    value = f"{ag['value']:.3f}" if ag["value"] is not None else f"n/a ({ag.get('note')})"
    lines.append(f"Agreement: {ag['measure']} = {value} over {ag['n_pairs']} pairs finished "
                 f"by two or more annotators")
    return "\n".join(lines)
