"""Two models' responses to the same queries, matched into pairs, and the paper's rule for a
pair judged in both orders (Figure 2): what `ple winrate` (a judge) and `ple annotate`
(people) share.

Input records (an `eval_samples.jsonl` line) are JSON objects with at least `query` (a
non-empty string) and `response` (a string); other fields are ignored. A query may appear
once per file: a second record with the same query is refused, naming both lines, since
which of the two responses to show would be a guess.

The rule, from model A's side, for a pair judged in both orders: *win* if A was preferred in
both, *lose* if B was, *tie* otherwise (preferred in only one order, or "equal" in either).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ple.data_files import load_records
from ple.errors import UserError

OUTCOMES = ("win", "tie", "lose")

# Order 0 shows model A's response as "Response 1"; order 1 shows model B's first.
ORDERS = (0, 1)


@dataclass(frozen=True)
class Pair:
    id: int  # 1-based, in file A's order of the matched queries
    query: str
    response_a: str
    response_b: str

    def shown(self, order: int) -> tuple[str, str]:
        """(Response 1, Response 2) as the page shows them in `order`."""
        return (self.response_a, self.response_b) if order == 0 else \
            (self.response_b, self.response_a)


@dataclass(frozen=True)
class Matched:
    pairs: list[Pair]
    n_a: int  # records in file A
    n_b: int
    only_a: int  # queries of A that B lacks
    only_b: int

    def describe(self, file_a: str, file_b: str) -> str:
        return (f"matched {len(self.pairs)} queries present in both files ({file_a}: "
                f"{self.n_a} records, {self.only_a} not in the other; {file_b}: {self.n_b} "
                f"records, {self.only_b} not in the other)")


def load_samples(path: str) -> dict[str, str]:
    """query -> response of one eval_samples file, in file order."""
    records = load_records(path)
    if not records:
        raise UserError(f"{path}: no records")
    samples: dict[str, str] = {}
    first_where: dict[str, str] = {}
    for rec in records:
        query, response = rec.data.get("query"), rec.data.get("response")
        if query is None or response is None:
            missing = "query" if query is None else "response"
            raise UserError(f"{rec.where}: record has no `{missing}` field (an eval sample "
                            f"needs `query` and `response`)")
        if not isinstance(query, str) or not query.strip():
            raise UserError(f"{rec.where}: field `query` must be a non-empty string")
        if not isinstance(response, str):
            raise UserError(f"{rec.where}: field `response` must be a string, got "
                            f"{type(response).__name__}")
        if query in samples:
            raise UserError(f"{rec.where}: query repeats the one at {first_where[query]} "
                            f"(each query may appear once per file)")
        samples[query] = response
        first_where[query] = rec.where
    return samples


def match(file_a: str, file_b: str) -> Matched:
    """The pairs of two eval_samples files: queries present in both, exactly equal."""
    a, b = load_samples(file_a), load_samples(file_b)
    pairs = [Pair(i + 1, q, a[q], b[q]) for i, q in enumerate(q for q in a if q in b)]
    if not pairs:
        raise UserError(f"{file_a} and {file_b} have no query in common ({len(a)} and "
                        f"{len(b)} queries): are they answers to the same eval queries?")
    return Matched(pairs, len(a), len(b), len(a) - len(pairs), len(b) - len(pairs))


def labels(file_a: str, file_b: str) -> tuple[str, str]:
    """Short names for the two models in reports (never on the judging page): the files'
    stems, or their folders' names when the stems are the same (run1/eval_samples.jsonl)."""
    pa, pb = Path(file_a).resolve(), Path(file_b).resolve()
    sa, sb = pa.name.split(".")[0], pb.name.split(".")[0]
    if sa != sb:
        return sa, sb
    if pa.parent.name != pb.parent.name:
        return pa.parent.name, pb.parent.name
    return "A", "B"


def outcome(first: str, second: str) -> str:
    """Model A's outcome from the two judgments of one pair ("A", "B" or "equal" each,
    in either order)."""
    for p in (first, second):
        if p not in ("A", "B", "equal"):
            raise ValueError(f"preference {p!r}")
    if first == second == "A":
        return "win"
    if first == second == "B":
        return "lose"
    return "tie"
